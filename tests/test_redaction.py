"""Secrets out of provider text (shipskip.redaction): whole, and any run of 8 characters of them."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, compare, rerun, review
from fakeopenai import LeakingTakes, Reply, is_take_request

from shipskip.errors import ProviderRejected
from shipskip.redaction import Redactor, catalog_password, settings_secrets
from shipskip.settings import get_settings

KEY = "sk-red-secret-12345-Qx7vLp9TzWm3"
# What a hostile provider echoes: the key whole, and pieces of it.
PIECES = [KEY, KEY[:19], KEY[7:15], KEY[-12:]]


def windows(secret: str, n: int = 8) -> set[str]:
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


def leaks(text: str, secret: str = KEY) -> list[str]:
    """Every 8-character run of the secret found in the text."""
    return sorted(w for w in windows(secret) if w in text)


def test_the_whole_secret_and_every_run_of_eight_are_masked_and_shorter_runs_are_not():
    r = Redactor([KEY, "pg-pass-word-99"], min_run=8)
    for piece in PIECES:
        text = f"error: bad key '{piece}' given"
        masked = r.redact(text)
        assert leaks(masked) == [] and masked.startswith("error: bad key '") and masked.endswith("' given")
        assert r.holds(text)
    # Seven characters of it are not the secret; neither is ordinary text.
    assert r.redact(f"x {KEY[3:10]} y") == f"x {KEY[3:10]} y" and not r.holds(KEY[3:10])
    assert r.redact("a plain take about a tool") == "a plain take about a tool"
    # Two pieces side by side, and two secrets, all go.
    joined = r.redact(KEY[:10] + KEY[12:22] + " and pass-word-99!")
    assert leaks(joined) == [] and "word-99" not in joined
    assert Redactor([], 8).redact(KEY) == KEY and not Redactor([], 8).holds(KEY)


def test_every_secret_the_settings_hold_is_known(monkeypatch):
    monkeypatch.setenv("SHIPSKIP_API_KEY", "sk-global-0000000001")
    monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__API_KEY", "sk-skeptic-000000002")
    monkeypatch.setenv("SHIPSKIP_CATALOG", "host=db dbname=shipskip user=u password='p@ss w0rd-3'")
    monkeypatch.setenv("PGPASSWORD", "pg-env-password-4")
    found = settings_secrets(get_settings())
    assert set(found) == {"sk-global-0000000001", "sk-skeptic-000000002", "p@ss w0rd-3", "pg-env-password-4"}
    assert catalog_password("postgresql://me:s3cr3t-pw@db/x") == "s3cr3t-pw"
    assert catalog_password("host=db password=plain-pw user=x") == "plain-pw"
    assert catalog_password("host=db user=x") is None


def haystacks(isolated: Path) -> dict[str, str]:
    db = isolated / "shipskip.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CHECKPOINT")
    return {str(p): p.read_bytes().decode("latin-1") for p in isolated.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_provider_that_returns_the_key_leaves_none_of_it_stored_or_published(
    fake, isolated, monkeypatch, capsys
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "3")
    fake.default = LeakingTakes(PIECES[:2])
    outs = [review(ROOT / "data" / "tools" / name) for name in ("claw-code.yaml", "smollm3.yaml")]
    assert all(r["_auth"] == f"Bearer {KEY}" for r in fake.requests)  # the key does reach the provider
    # Each take that held the key was refused and asked again: two bad ones, then a good one.
    written = [t for out in outs for t in out.takes if t.text]
    assert len(written) >= 5 and not any(t.error for out in outs for t in out.takes)
    assert sum(1 for r in fake.requests if is_take_request(r)) == 3 * len(written)
    assert all("key is" not in t.text and "***" not in t.text for t in written)
    # What the model is shown of its refused answer is masked too.
    fed_back = [
        m["content"] for r in fake.requests for m, nxt in zip(r["messages"], r["messages"][1:], strict=False)
        if m["role"] == "assistant" and nxt["content"].startswith("That answer was rejected")
    ]  # fmt: skip
    assert fed_back and all(leaks(m) == [] and "***" in m for m in fed_back)

    # A 401 whose body echoes pieces of the key: one masked line, nothing stored.
    fake.default = Reply(
        status=401, body=json.dumps({"error": {"message": f"bad key {KEY[:19]}, {KEY[-12:]}"}})
    )
    with pytest.raises(ProviderRejected) as e:
        rerun("claw-code", "skeptic", "the key was rotated")
    assert leaks(str(e.value)) == [] and "***" in str(e.value)

    compare("claw-code", "smollm3")
    found = haystacks(isolated)
    assert any(k.endswith(".duckdb") for k in found) and any(k.endswith(".html") for k in found)
    captured = capsys.readouterr()
    found["stdout"], found["stderr"] = captured.out, captured.err
    assert {k: leaks(v) for k, v in found.items() if leaks(v)} == {}
