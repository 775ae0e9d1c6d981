from pathlib import Path

import pytest

from shipskip.errors import SettingsError
from shipskip.settings import get_settings


@pytest.mark.parametrize(
    ("env", "value", "line"),
    [
        ("SHIPSKIP_MAX_NEW_PER_RUN", "0", "SHIPSKIP_MAX_NEW_PER_RUN: must be ≥ 1"),
        ("SHIPSKIP_LLM_CONCURRENCY", "5000", "SHIPSKIP_LLM_CONCURRENCY: must be ≤ 1024"),
        ("SHIPSKIP_BUSY_WAIT_S", "soon", "SHIPSKIP_BUSY_WAIT_S: must be a valid number"),
        ("SHIPSKIP_SCORING", "vibes", "SHIPSKIP_SCORING: must be 'checklist' or 'holistic'"),
        ("SHIPSKIP_PERSONAS__SKEPTIC__TEMPERATURE", "hot", "SHIPSKIP_PERSONAS__SKEPTIC__TEMPERATURE:"),
        ("SHIPSKIP_PERSONAS", "{not json", "SHIPSKIP_PERSONAS: could not be parsed"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_variable(monkeypatch, env, value, line):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as e:
        get_settings()
    assert str(e.value).startswith(line) and e.value.variable == env
    assert "\n" not in str(e.value) and "pydantic" not in str(e.value) and value not in str(e.value)


def test_the_readme_table_of_settings_is_made_from_the_settings_and_current():
    """Every setting has a description, and README.md's table is what `shipskip settings
    --markdown` prints now (regenerate it with that command when a setting changes)."""
    from shipskip.settings import Settings, settings_table

    assert [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()] == []
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    assert readme[readme.index(start) + len(start) : readme.index(end)] == settings_table()


def test_settings_command_masks_secrets(monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    monkeypatch.setenv("SHIPSKIP_API_KEY", "sk-settings-test-0123456789abcdef")
    monkeypatch.setenv("SHIPSKIP_FLAG_DELTA", "21")
    result = CliRunner().invoke(app, ["settings"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0123456789abcdef" not in result.output and "**********" in result.output
    assert "SHIPSKIP_FLAG_DELTA" in result.output and "21" in result.output


def test_the_site_url_is_an_http_address_or_refused_in_one_line(monkeypatch):
    from shipskip.errors import SettingsError
    from shipskip.settings import get_settings

    monkeypatch.setenv("SHIPSKIP_SITE_URL", "https://example.org/reviews/")
    assert get_settings().site_url == "https://example.org/reviews"
    for bad in (
        "ftp://example.org",
        "javascript:alert(1)",
        "https://example.org/?q=1",
        'https://x.org/"><b>',
    ):
        monkeypatch.setenv("SHIPSKIP_SITE_URL", bad)
        with pytest.raises(SettingsError, match="^SHIPSKIP_SITE_URL: must be an http or https address"):
            get_settings()
