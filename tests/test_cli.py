import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from shipskip.cli import app


# Commands that run flows, through the CLI or as subprocesses: seconds each, so the slow tier.
def runs_flows(test):
    return pytest.mark.slow(pytest.mark.usefixtures("prefect_harness")(test))


runner = CliRunner()
CARD = str(ROOT / "data" / "tools" / "claw-code.yaml")


@runs_flows
def test_review_prints_the_panel_and_show_reads_it_back(holistic):
    res = runner.invoke(app, ["review", CARD])
    assert res.exit_code == 0, res.output
    assert "Builder" in res.output and "80/100" in res.output
    assert "Ship · 5 ship / 0 skip · 100% panel ship" in res.output
    shown = runner.invoke(app, ["show", "claw-code"])
    assert shown.exit_code == 0 and "Ship · 5 ship / 0 skip" in shown.output


@runs_flows
def test_compare_vote_page_and_digest_write_files(fake, isolated):
    runner.invoke(app, ["review", CARD, str(ROOT / "data" / "tools" / "smollm3.yaml")])
    assert runner.invoke(app, ["vote", "smollm3", "ship"]).exit_code == 0
    # One vote per voter: voting again changes it; another voter adds one.
    again = runner.invoke(app, ["vote", "smollm3", "SKIP"])
    assert (
        again.exit_code == 0 and "changed to skip" in again.output and "0% Ship (0 / 1 voter)" in again.output
    )
    assert runner.invoke(app, ["vote", "smollm3", "ship", "--voter", "ana"]).exit_code == 0
    assert runner.invoke(app, ["vote", "smollm3", "maybe"]).exit_code == 2
    assert runner.invoke(app, ["vote", "smollm3", "ship", "--voter", "a b"]).exit_code == 2
    res = runner.invoke(app, ["compare", "claw-code", "smollm3"])
    assert res.exit_code == 0, res.output
    page = isolated / "out" / "compare" / "claw-code-vs-smollm3.html"
    assert page.is_file() and "50% Ship (1 / 2 voters)" in page.read_text()
    assert runner.invoke(app, ["page", "smollm3"]).exit_code == 0
    assert (isolated / "out" / "tools" / "smollm3.md").is_file()
    assert runner.invoke(app, ["digest"]).exit_code == 0


@runs_flows
def test_bad_card_is_one_line_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: X\nslug: ../x\n")
    res = subprocess.run([sys.executable, "-m", "shipskip", "review", str(bad)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "slug" in lines[0]
    assert "Traceback" not in res.stderr + res.stdout


@runs_flows
def test_unknown_tool_is_a_clear_error(fake):
    runner.invoke(app, ["review", CARD])
    res = runner.invoke(app, ["compare", "claw-code", "nope"])
    assert res.exit_code == 2 and "nope" in res.output


@runs_flows
def test_ingest_rerun_history_sql_and_export(fake, isolated, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "smollm3.yaml").write_text((ROOT / "data" / "tools" / "smollm3.yaml").read_text())
    (inbox / "bad.yaml").write_text("name: Bad\n")
    res = runner.invoke(app, ["ingest", str(inbox)])
    assert res.exit_code == 0 and "reviewed 1, unchanged 0, refused 1" in res.output
    res = runner.invoke(app, ["rerun", "smollm3", "skeptic", "--reason", "new model", "--model", "m2"])
    assert res.exit_code == 0, res.output
    hist = runner.invoke(app, ["history", "smollm3", "skeptic"])
    assert hist.exit_code == 0 and "new" in hist.output and "m2" in hist.output and "+" in hist.output
    res = runner.invoke(app, ["rerun", "smollm3", "skeptic", "--reason", "why not", "--prompt-version", "9"])
    assert res.exit_code == 2 and "skeptic@9.yaml" in res.output
    res = runner.invoke(app, ["rerun", "smollm3", "critic", "--reason", "why not"])
    assert res.exit_code == 2 and "critic" in res.output and "is not one of" in res.output
    res = runner.invoke(
        app, ["sql", "SELECT persona, version FROM takes WHERE persona = 'skeptic' ORDER BY 2"]
    )
    assert res.exit_code == 0 and "2 rows" in res.output
    res = runner.invoke(app, ["sql", "DROP TABLE takes"])
    assert res.exit_code == 2 and "only SELECT" in res.output

    monkeypatch.chdir(tmp_path)  # --out writes only under the working directory
    res = runner.invoke(
        app, ["sql", "SELECT * FROM takes", "--format", "json", "--out", str(tmp_path / "t.json")]
    )
    assert res.exit_code == 0 and (tmp_path / "t.json").read_text().startswith("[")
    res = runner.invoke(app, ["export", "--to", str(tmp_path / "exp")])
    assert res.exit_code == 0 and (tmp_path / "exp" / "takes.parquet").is_file()


@runs_flows
def test_a_rejected_key_fails_the_run_and_marks_nothing_reviewed(fake, isolated):
    import json as _json

    from fakeopenai import Reply

    from shipskip.store import Store

    fake.default = Reply(status=401, body=_json.dumps({"error": {"message": "Incorrect API key"}}))
    res = runner.invoke(app, ["review", CARD])
    assert res.exit_code == 2 and "refused the request (401" in res.output
    # No traceback from shipskip itself (the fake server's threads may log a reset connection).
    assert not any("src/shipskip" in ln or "flows/" in ln for ln in res.output.splitlines())
    store = Store(isolated / "shipskip.duckdb")
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'complete'")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0
    inbox = isolated / "inbox"
    inbox.mkdir()
    shutil.copy(CARD, inbox / "claw-code.yaml")
    res = runner.invoke(app, ["ingest", str(inbox)])
    assert res.exit_code == 2 and "401" in res.output


@runs_flows
def test_a_base_url_that_is_not_an_openai_api_stops_the_run(fake, isolated, monkeypatch):
    from fakeopenai import Reply

    from shipskip.store import Store

    # A web server that answers every path with 200 and an HTML page.
    fake.default = Reply(body="<html><body>Welcome to nginx!</body></html>")
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "2")
    inbox = isolated / "inbox"
    inbox.mkdir()
    shutil.copy(CARD, inbox / "claw-code.yaml")
    res = runner.invoke(app, ["ingest", str(inbox)])
    assert res.exit_code == 2 and "no seat got a valid reply" in res.output
    # One line says why (the lines before it are the seats' progress).
    assert len([ln for ln in res.output.splitlines() if ln.startswith("error:")]) == 1
    assert "Traceback" not in res.output
    store = Store(isolated / "shipskip.duckdb")
    assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0


@runs_flows
def test_a_review_of_several_cards_prints_no_prefect_errors(fake, isolated):
    """Run as a user runs it: its own temporary Prefect API, drained before it stops."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    cards = [str(ROOT / "data" / "tools" / n) for n in ("smollm3.yaml", "claw-code.yaml")]
    run = subprocess.run([sys.executable, "-m", "shipskip", "review", *cards], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("panel ship") == 2
    for noise in ("ERROR", "EventsWorker", "Traceback"):
        assert noise not in run.stdout + run.stderr


@runs_flows
def test_an_installed_wheel_reviews_a_card_outside_the_checkout(fake, tmp_path):
    """The wheel carries its prompts; data and pages land under the working directory."""
    import os
    import subprocess
    import sys

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    target = tmp_path / "site"
    (wheel,) = wheels.glob("shipskip-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(CARD, work / "card.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPSKIP_DB") and k != "SHIPSKIP_OUT_DIR"}
    env.pop("PREFECT_API_URL", None)
    env["PYTHONPATH"] = str(target)
    code = "import shipskip, sys; assert shipskip.__file__.startswith(sys.argv[1]), shipskip.__file__"
    subprocess.run([sys.executable, "-c", code, str(target)], env=env, cwd=work, check=True, timeout=60)
    run = subprocess.run([sys.executable, "-m", "shipskip", "review", "card.yaml"], env=env, cwd=work,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (work / "data" / "shipskip.duckdb").is_file() and "panel ship" in run.stdout
    compare = subprocess.run([sys.executable, "-m", "shipskip", "page", "claw-code"], env=env, cwd=work,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert compare.returncode == 0 and (work / "out" / "tools" / "claw-code.html").is_file()


@runs_flows
def test_the_rerun_flow_refuses_a_persona_that_is_not_one(fake, isolated):
    """The flow's typed parameters: Prefect refuses `persona=critic` at submission."""
    from prefect.exceptions import ParameterTypeError

    from flows.scheduled import rerun_persona

    with pytest.raises(ParameterTypeError, match="persona"):
        rerun_persona(tool="smollm3", persona="critic", reason="why not")


@runs_flows
def test_sql_markdown_and_wide_results_as_records(fake, isolated):
    runner.invoke(app, ["review", CARD])
    md = runner.invoke(
        app, ["sql", "SELECT persona, verdict FROM current_takes ORDER BY 1", "--format", "markdown"]
    )
    assert (
        md.exit_code == 0
        and md.stdout.splitlines()[0] == "| persona | verdict |"
        and len(md.stdout.splitlines()) == 7
    )
    wide = runner.invoke(app, ["sql", "SELECT * FROM current_takes ORDER BY persona", "--limit", "2"])
    assert wide.exit_code == 0 and "-[ record 1 ]-" in wide.stdout and "-[ record 3 ]-" not in wide.stdout
    assert "prompt_hash" in wide.stdout and "2 rows shown; more rows left out" in wide.stdout


def test_help_shows_no_python_type_tags():
    """Flags take no value and `cards...` says "one or more": no `<bool>` or `<list[Path]>`."""
    for command in (["review", "--help"], ["eval", "--help"], ["rerun", "--help"], ["sql", "--help"]):
        res = runner.invoke(app, command, env={"COLUMNS": "120"})
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output and "<list[" not in res.output
    assert "<int>" in runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "120"}).output
    persona = runner.invoke(app, ["rerun", "--help"], env={"COLUMNS": "200"}).output
    assert "builder|skeptic|futurist|creator|founder" in persona


@runs_flows
def test_a_dead_provider_stops_the_review_in_one_line_within_its_bound(fake, isolated, monkeypatch):
    """Through the review-tool flow (a task per seat): a provider that trickles its replies
    slower than TIMEOUT_S allows costs at most 2 x TIMEOUT_S x MAX_ATTEMPTS, and says so."""
    import time

    from fakeopenai import Reply

    from shipskip.settings import get_settings
    from shipskip.store import Store

    monkeypatch.setenv("SHIPSKIP_TIMEOUT_S", "3")
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "3")
    settings = get_settings()
    fake.default = Reply(content="Yes", trickle_s=0.8)
    started = time.monotonic()
    res = runner.invoke(app, ["review", CARD])
    took = time.monotonic() - started
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "not answering" in errors[0], res.output
    assert took <= 2 * settings.timeout_s * settings.max_attempts, took
    assert len(fake.requests) <= settings.breaker_failures + settings.llm_concurrency
    store = Store(isolated / "shipskip.duckdb")
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0


@runs_flows
def test_a_stalled_feed_url_ends_the_ingest_with_one_line_and_exit_2(isolated, monkeypatch):
    import socket
    import threading

    monkeypatch.setenv("SHIPSKIP_FEED_TIMEOUT_S", "2")
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def stall():  # headers, a first byte, then nothing
        conn, _ = listener.accept()
        held.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\ncontent-length: 900\r\n\r\n<")

    threading.Thread(target=stall, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/feed.rss"
    try:
        res = runner.invoke(app, ["ingest", url])
    finally:
        for conn in held:
            conn.close()
        listener.close()
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and url in errors[0] and "SHIPSKIP_FEED_TIMEOUT_S" in errors[0], res.output
