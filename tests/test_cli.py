import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from shipskip.cli import app, run


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
    assert res.exit_code == 2 and "no persona got a valid reply" in res.output
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


def test_a_rerun_of_an_unknown_tool_says_so_before_prefect_is_even_imported(isolated):
    """`shipskip rerun unknown-slug ...` answers from the store at once: Prefect (seconds to
    import) is blocked in this process, so neither its API nor a model server, both started by
    the flow, can have started; the command still fails with its one clear line."""
    import os

    _reviewed_demo_tool(isolated)
    argv = ["shipskip", "rerun", "unknown-slug", "skeptic", "--reason", "licence clarified"]
    code = (
        f"import sys; sys.modules['prefect'] = None; sys.argv = {argv!r}; from shipskip.cli import run; run()"
    )
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["error: no reviewed tool with slug 'unknown-slug'"], res.stderr[-2000:]


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


# Text a terminal would act on, or rich would read as markup: an OSC 8 link, a CSI clear-screen,
# a window title, bidi overrides and isolates, BEL, a C1 CSI and NEL, and markup that closes a
# tag never opened or makes a link.
OSC8 = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"
HOSTILE = f"[/foo] [link=http://evil.example]x[/link] {OSC8} \x1b[2J\x1b]0;owned\x07 \u202eevil\u2066\u2069\x07\x9b31m\x85"
# What must never reach a terminal from stored or typed text.
TERMINAL_CONTROLS = ("\x1b", "\x07", "\x9b", "\x85", "\u202e", "\u2066", "\u2069")


def _clean_output(res, code: int) -> str:
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert not any(c in res.output for c in TERMINAL_CONTROLS), repr(res.output)
    assert "MarkupError" not in res.output and "Traceback" not in res.output
    return res.output


def _store_hostile_tools(isolated):
    """Two tools in one category, their takes, a rerun and a vote, stored with raw hostile text
    where the store keeps what it is given (takes, reasons, model names), as rows written before
    the way in was checked would be."""
    from conftest import make_card, make_take

    from shipskip.roster import personas
    from shipskip.store import Store

    store = Store(isolated / "shipskip.duckdb")
    cards = [
        make_card(name=f"Bad {HOSTILE}", slug="bad-name"),
        make_card(name="Plain Tool", slug="plain-tool"),
    ]
    for card in cards:
        run = store.begin_run(card)
        store.commit_review(
            run, card, [make_take(p, "ship", 80, f"Takes {HOSTILE} here") for p in personas()]
        )
    take = make_take("skeptic", "skip", 40, f"Rerun {HOSTILE}").model_copy(update={"model": f"m{HOSTILE}"})
    run = store.begin_run(cards[0], kind="rerun", rerun_reason=f"licence {HOSTILE}")
    store.commit_review(run, cards[0], [take])
    return store, cards


@pytest.mark.slow
def test_hostile_text_prints_as_text_through_every_command(fake, isolated, monkeypatch):
    monkeypatch.chdir(isolated)
    monkeypatch.setenv("COLUMNS", "400")
    store, cards = _store_hostile_tools(isolated)
    assert cards[0].name.startswith("Bad [/foo] [link=http://evil.example]x[/link] click")
    # show and history: a stored name `Bad [/foo] Name` made rich raise MarkupError (exit 1) for good.
    out = _clean_output(runner.invoke(app, ["show", "bad-name"]), 0)
    assert "Bad [/foo] [link=http://evil.example]x[/link]" in out and "Takes [/foo]" in out
    out = _clean_output(runner.invoke(app, ["history", "bad-name"]), 0)
    assert "licence [/foo] [link=http://evil.example]x[/link] click" in out and "evil" in out
    for command in (["page", "plain-tool"], ["page", "bad-name"], ["compare", "bad-name", "plain-tool"],
                    ["digest"], ["reviewer", "skeptic"]):  # fmt: skip
        assert "Wrote " in _clean_output(runner.invoke(app, command), 0)
    out = _clean_output(
        runner.invoke(app, ["sql", 'SELECT name AS "[/c]", slug FROM tools ORDER BY slug']), 0
    )
    assert "[/c]" in out and "Bad [/foo] [link=" in out
    out = _clean_output(runner.invoke(app, ["sql", "SELECT *, 1 AS a, 2 AS b, 3 AS c FROM tools"]), 0)
    assert "-[ record 1 ]-" in out and "[/foo]" in out
    # Typed text: a voter, a slug and a reason, each refused or printed clean.
    out = _clean_output(runner.invoke(app, ["vote", "plain-tool", "ship", "--voter", f"a{HOSTILE}"]), 2)
    assert "--voter" in out and len(out.strip().splitlines()) == 1
    for command in (["show", f"nope{HOSTILE}"], ["history", f"nope{HOSTILE}"], ["vote", f"x{HOSTILE}", "ship"],
                    ["page", f"x{HOSTILE}"], ["compare", "plain-tool", f"x{HOSTILE}"]):  # fmt: skip
        out = _clean_output(runner.invoke(app, command), 2)
        assert len(out.strip().splitlines()) == 1 and "[/foo]" in out, out
    # A reason of nothing but control characters, bidi controls and spaces is refused before
    # anything starts or is stored.
    before = store.query("SELECT count(*) AS n FROM runs")[0]["n"]
    out = _clean_output(
        runner.invoke(app, ["rerun", "plain-tool", "skeptic", "--reason", "\x1b[2J\x07 \u202e\u2066 \x9b"]), 2
    )
    assert "--reason" in out and len(out.strip().splitlines()) == 1
    assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == before


@pytest.mark.slow
def test_a_stored_row_that_fails_validation_costs_only_its_own_page(fake, isolated, monkeypatch):
    """Simulated by writing a bad row straight into DuckDB: the tool's own page and `show` fail
    with one line; a neighbour's page (whose similar-tools block lists it) and the digest work."""
    import duckdb

    _store_hostile_tools(isolated)
    with duckdb.connect(str(isolated / "shipskip.duckdb")) as con:
        con.execute("UPDATE tools SET name = '', description = 'short' WHERE slug = 'bad-name'")
    for command in (["page", "bad-name"], ["show", "bad-name"], ["compare", "plain-tool", "bad-name"]):
        out = _clean_output(runner.invoke(app, command), 2)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1 and "bad-name" in lines[0] and "name" in lines[0], out
    out = _clean_output(runner.invoke(app, ["page", "plain-tool"]), 0)
    assert "Wrote " in out and "left out: stored tools row 'bad-name': name" in out
    page = (isolated / "out" / "tools" / "plain-tool.html").read_text()
    assert "Plain Tool" in page
    out = _clean_output(runner.invoke(app, ["digest"]), 0)
    assert "(1 tools)" in out and "left out: stored tools row 'bad-name'" in out
    out = _clean_output(runner.invoke(app, ["site"]), 0)  # the whole site: the rest of it is built
    assert "left out: stored tools row 'bad-name'" in out
    assert (isolated / "out" / "index.html").is_file() and "bad-name" not in (
        isolated / "out" / "index.html"
    ).read_text()


def _entry_point(monkeypatch, capsys, *argv: str) -> tuple[int, list[str]]:
    """The installed `shipskip` command, in this process: its exit status and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["shipskip", *argv])
    with pytest.raises(SystemExit) as e:
        run()
    return e.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_every_command_refuses_a_bad_setting_with_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SHIPSKIP_MAX_NEW_PER_RUN", "0")
    # `show` reads the settings inside its error handling, `eval` before it: both say one line.
    for argv in (["show", "x"], ["eval", str(tmp_path / "ref.jsonl")], ["digest"]):
        code, lines = _entry_point(monkeypatch, capsys, *argv)
        assert (code, lines) == (2, ["error: SHIPSKIP_MAX_NEW_PER_RUN: must be ≥ 1"]), argv


def test_a_full_disk_under_standard_output_is_one_line_and_exit_2(monkeypatch, capsys):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    from shipskip.settings import get_settings
    from shipskip.store import Store

    Store.from_settings(get_settings()).init()
    captured = sys.stdout
    with open("/dev/full", "w") as full:
        sys.stdout = full
        try:
            code, lines = _entry_point(monkeypatch, capsys, "sql", "SELECT 42 AS answer", "--format", "csv")
        finally:
            sys.stdout = captured
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: no space left on the device")


@runs_flows
def test_a_hostile_card_name_and_reason_through_review_and_rerun(fake, isolated, tmp_path):
    """The flows' own printing: the progress line, the panel's title, a rerun's reason."""
    import yaml

    from shipskip.store import Store

    card = yaml.safe_load(Path(CARD).read_text())
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump({**card, "name": f"Bad {HOSTILE}"}))
    out = _clean_output(runner.invoke(app, ["review", str(path)], env={"COLUMNS": "400"}), 0)
    assert "Bad [/foo] [link=http://evil.example]x[/link]" in out
    reason = f"licence {HOSTILE} ok"
    out = _clean_output(runner.invoke(app, ["rerun", "claw-code", "skeptic", "--reason", reason]), 0)
    stored = Store(isolated / "shipskip.duckdb").history("claw-code", "skeptic")[-1]["reason"]
    assert stored == "licence [/foo] [link=http://evil.example]x[/link] click evil 31m ok"
    out = _clean_output(runner.invoke(app, ["history", "claw-code"], env={"COLUMNS": "400"}), 0)
    assert "licence [/foo] [link=http://evil.example]x[/link]" in out


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


def _reviewed_demo_tool(isolated) -> None:
    """One stored panel (demo-tool), written straight to the store: no flow, no provider."""
    from conftest import make_card, make_take

    from shipskip.roster import personas
    from shipskip.store import Store

    store, card = Store(isolated / "shipskip.duckdb"), make_card()
    run = store.begin_run(card)
    store.commit_review(run, card, [make_take(p, "ship", 70) for p in personas()])


@pytest.mark.slow
def test_bad_rerun_and_ingest_inputs_fail_before_any_server_starts(isolated, caplog):
    """With the embedded model (no provider set) and no Prefect server configured, a command
    whose input is bad says so in one line, exit 2, and starts neither the temporary Prefect
    API nor the llama.cpp server (every server start is logged by `lifeline`)."""
    import logging

    caplog.set_level(logging.INFO, logger="shipskip.lifeline")
    _reviewed_demo_tool(isolated)
    cases = [
        (["rerun", "nope", "skeptic", "--reason", "licence clarified"], "no reviewed tool with slug 'nope'"),
        (["rerun", "demo-tool", "skeptic", "--reason", "why not", "--prompt-version", "9"], "skeptic@9.yaml"),
        (["rerun", "demo-tool", "skeptic", "--reason", "why not", "--model", " "], "model:"),
        (["ingest", str(isolated / "no-such-inbox")], "source: "),
    ]
    for args, said in cases:
        res = runner.invoke(app, args)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2, (args, res.output)
        assert len(lines) == 1 and lines[0].startswith("error:") and said in lines[0], (args, res.output)
    assert [r.getMessage() for r in caplog.records if r.name == "shipskip.lifeline"] == []
