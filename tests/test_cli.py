import subprocess
import sys

from conftest import ROOT
from typer.testing import CliRunner

from shipskip.cli import app

runner = CliRunner()
CARD = str(ROOT / "data" / "tools" / "claw-code.yaml")


def test_review_prints_the_panel_and_show_reads_it_back(fake):
    res = runner.invoke(app, ["review", CARD])
    assert res.exit_code == 0, res.output
    assert "Builder" in res.output and "80/100" in res.output
    assert "Ship · 5 ship / 0 skip · 100% panel ship" in res.output
    shown = runner.invoke(app, ["show", "claw-code"])
    assert shown.exit_code == 0 and "Ship · 5 ship / 0 skip" in shown.output


def test_compare_vote_page_and_digest_write_files(fake, isolated):
    runner.invoke(app, ["review", CARD, str(ROOT / "data" / "tools" / "smollm3.yaml")])
    assert runner.invoke(app, ["vote", "smollm3", "ship"]).exit_code == 0
    res = runner.invoke(app, ["compare", "claw-code", "smollm3"])
    assert res.exit_code == 0, res.output
    page = isolated / "out" / "compare" / "claw-code-vs-smollm3.html"
    assert page.is_file() and "100% Ship (1 / 1)" in page.read_text()
    assert runner.invoke(app, ["page", "smollm3"]).exit_code == 0
    assert (isolated / "out" / "tools" / "smollm3.md").is_file()
    assert runner.invoke(app, ["digest"]).exit_code == 0


def test_bad_card_is_one_line_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: X\nslug: ../x\n")
    res = subprocess.run([sys.executable, "-m", "shipskip", "review", str(bad)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "slug" in lines[0]
    assert "Traceback" not in res.stderr + res.stdout


def test_unknown_tool_is_a_clear_error(fake):
    runner.invoke(app, ["review", CARD])
    res = runner.invoke(app, ["compare", "claw-code", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
