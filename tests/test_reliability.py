"""Faults, crashes, concurrent readers, secrets and bad input: nothing lost, nothing leaked."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT
from fakeopenai import Reply, lead_of, persona_of, take_json
from reliability_helpers import alive, descendants, logged_requests, start_fake_process, write_cards

from flows.scheduled import review_new_tools
from shipskip.store import Store

# Real processes, kills, soaks and faults over many flow runs: minutes, so the slow tier.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

FAULTS = [
    "429",
    "500",
    "503",
    "slow",
    "reset",
    "truncated",
    "wrong_shape",
    "out_of_range",
    "empty",
    "refusal",
]


def faulty(seed: int, rate: float, timeout_s: float):
    rng = random.Random(seed)
    log: list[dict] = []

    def answer(req):
        lead = lead_of(req)
        good = take_json(rng.choice(["ship", "skip"]), 0, lead=lead)
        data = json.loads(good)
        data["score"] = rng.randint(60, 100) if data["verdict"] == "ship" else rng.randint(0, 59)
        good = json.dumps(data)
        if rng.random() >= rate:
            log.append({"kind": "ok", "tokens": 100})
            return Reply(content=good, usage=(100, 30))
        kind = rng.choice(FAULTS)
        counted = kind in ("truncated", "wrong_shape", "out_of_range", "empty", "refusal")
        log.append({"kind": kind, "tokens": 100 if counted else 0})
        return {
            "429": Reply(status=429, headers={"retry-after": "0.2"}),
            "500": Reply(status=500),
            "503": Reply(status=503),
            "slow": Reply(content=good, delay_s=timeout_s + 0.5),
            "reset": Reply(reset=True),
            "truncated": Reply(content=good[: len(good) // 2], finish_reason="length"),
            "wrong_shape": Reply(content=json.dumps({"rating": 5, "comment": "nice"})),
            "out_of_range": Reply(content=good.replace(f'"score": {data["score"]}', '"score": 140')),
            "empty": Reply(content=""),
            "refusal": Reply(content=None, refusal="I can't review this."),
        }[kind]

    return answer, log


def test_thirty_percent_faults_twenty_tools_nothing_lost(holistic, tmp_path, monkeypatch, capsys):
    fake = holistic
    monkeypatch.setenv("SHIPSKIP_TIMEOUT_S", "1")
    answer, log = faulty(seed=7, rate=0.3, timeout_s=1)
    fake.default = answer
    write_cards(tmp_path / "inbox", 20)
    report = review_new_tools(source=str(tmp_path / "inbox"))
    assert len(report["reviewed"]) == 20 and report["refused"] == []

    store = Store(tmp_path / "shipskip.duckdb")
    runs = store.query("SELECT status, count(*) AS n FROM runs GROUP BY status")
    assert runs == [{"status": "complete", "n": 20}]
    takes = store.query("SELECT * FROM takes")
    assert len(takes) == 100
    for t in takes:
        if t["verdict"] is None:
            assert t["error"] and t["attempts"] == 3
        else:
            assert (t["verdict"] == "ship") == (t["score"] >= 60) and 0 <= t["score"] <= 100
            assert t["take"].startswith(t["slug"].replace("tool-", "Tool "))
    # Every request the server saw is an attempt counted on some take.
    assert sum(t["attempts"] for t in takes) == len(fake.requests) == len(log)
    delivered = sum(e["tokens"] for e in log)
    assert sum(t["prompt_tokens"] for t in takes) == delivered
    faults = Counter(e["kind"] for e in log if e["kind"] != "ok")
    assert set(faults) == set(FAULTS), "every fault kind should have been injected at least once"
    abstained = sum(1 for t in takes if t["verdict"] is None)
    with capsys.disabled():
        print(
            f"\n[faults] requests={len(log)} faults={sum(faults.values())} {dict(faults)} "
            f"runs_completed=20 takes_stored={len(takes)} abstained_after_retries={abstained} "
            f"retries={len(log) - 100} takes_lost=0"
        )


def _inbox_and_fake(tmp_path, n_tools, delay_s):
    """n generated cards in tmp_path/inbox, and the fake provider in its own process."""
    write_cards(tmp_path / "inbox", n_tools)
    log = tmp_path / "requests.jsonl"
    server, url = start_fake_process(delay_s, log)
    return tmp_path / "inbox", log, server, url


def _ingest(folder, base_url, db, extra_env=None):
    env = {**os.environ, "SHIPSKIP_BASE_URL": base_url, "SHIPSKIP_DB_PATH": str(db),
           "SHIPSKIP_MODEL": "fake-model", "SHIPSKIP_SCORING": "holistic", **(extra_env or {})}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "shipskip", "ingest", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_sigkill_mid_run_loses_nothing_and_resumes_without_repeats(tmp_path):
    inbox, log, server, url = _inbox_and_fake(tmp_path, 6, 0.4)
    db = tmp_path / "crash.duckdb"
    try:
        writer = _ingest(inbox, url, db, {"SHIPSKIP_LLM_CONCURRENCY": "2"})
        deadline = time.monotonic() + 120
        while len(logged_requests(log)) < 13 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = descendants(writer.pid)
        assert any("uvicorn" in c for c in children.values()), children  # its temporary Prefect API
        writer.send_signal(signal.SIGKILL)
        # Nothing it started keeps its stdout open: a pipe reading it ends.
        writer.communicate(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while alive(list(children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(list(children)), {p: children[p] for p in alive(list(children))}

        store = Store(db)
        complete = store.query("SELECT run_id FROM runs WHERE status = 'complete'")
        per_run = store.query("SELECT run_id, count(*) AS n FROM takes GROUP BY run_id")
        assert all(r["n"] == 5 for r in per_run), "a committed review always has all five takes"
        assert len(per_run) == len(complete)
        saved = {(r["slug"], r["persona"]) for r in store.query(
            "SELECT r.slug, c.persona FROM take_checkpoints c JOIN runs r USING (run_id)")}  # fmt: skip
        saved |= {(r["slug"], r["persona"]) for r in store.query("SELECT slug, persona FROM takes")}
        asked_before = len(logged_requests(log))

        again = _ingest(inbox, url, db)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        assert "Traceback" not in out + err
    finally:
        server.kill()
    store = Store(db)
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 30
    assert store.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 0
    later = logged_requests(log)[asked_before:]
    repeated = {(r["tool"].lower().replace(" ", "-"), r["persona"]) for r in later} & saved
    assert not repeated, f"takes stored before the kill were asked again: {repeated}"
    print(
        f"\n[crash] asked_before_kill={asked_before} stored_before_kill={len(saved)} "
        f"asked_after={len(later)} repeated=0 takes_final=30"
    )


def test_two_ingests_of_one_inbox_review_each_tool_once(tmp_path):
    n_tools = 6
    inbox, log, server, url = _inbox_and_fake(tmp_path, n_tools, 0.3)
    db = tmp_path / "twice.duckdb"
    try:
        first = _ingest(inbox, url, db)
        time.sleep(1.0)
        second = _ingest(inbox, url, db)
        outs = [p.communicate(timeout=300) for p in (first, second)]
    finally:
        server.kill()
    assert first.returncode == 0 and second.returncode == 0, outs
    store = Store(db)
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 5 * n_tools
    assert store.query("SELECT max(version) AS v FROM takes")[0]["v"] == 1
    assert store.query("SELECT count(*) AS n FROM runs WHERE status <> 'complete'")[0]["n"] == 0
    assert len(logged_requests(log)) == 5 * n_tools, "every seat of every tool asked exactly once"
    print(f"\n[two-ingests] tools={n_tools} requests={len(logged_requests(log))} takes=30 doubled=0")


READER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from shipskip.store import Store
store, until = Store(sys.argv[1]), time.monotonic() + float(sys.argv[2])
stats = {"queries": 0, "failures": 0, "partial": 0, "went_back": 0, "last": 0}
while time.monotonic() < until:
    try:
        partial = store.query("SELECT count(*) AS n FROM (SELECT run_id FROM committed_takes "
                              "GROUP BY run_id HAVING count(*) <> 5)")[0]["n"]
        n = store.query("SELECT count(*) AS n FROM current_takes")[0]["n"]
        store.query("SELECT * FROM persona_weekly")
        stats["queries"] += 3
        stats["partial"] += partial
        stats["went_back"] += n < stats["last"]
        stats["last"] = n
    except Exception as exc:
        if "no database yet" in str(exc):
            time.sleep(0.05); continue
        stats["failures"] += 1
        stats["error"] = repr(exc)[:300]
print(json.dumps(stats))
"""


def test_writer_and_analyst_reader_for_sixty_seconds(tmp_path):
    n_tools = 40
    inbox, log, server, url = _inbox_and_fake(tmp_path, n_tools, 1.4)
    db = tmp_path / "busy.duckdb"
    try:
        writer = _ingest(inbox, url, db)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db), "60", str(ROOT / "src")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        r_out, r_err = reader.communicate(timeout=200)
        w_out, w_err = writer.communicate(timeout=300)
    finally:
        server.kill()
    assert writer.returncode == 0, w_err
    stats = json.loads(r_out.strip().splitlines()[-1])
    assert stats["failures"] == 0, stats
    assert stats["partial"] == 0 and stats["went_back"] == 0
    assert stats["queries"] > 100
    assert Store(db).query("SELECT count(*) AS n FROM takes")[0]["n"] == 5 * n_tools
    print(
        f"\n[concurrency] reader_queries={stats['queries']} failures=0 partial_reviews_seen=0 "
        f"writes={n_tools} reviews takes={5 * n_tools} lost=0"
    )


def test_a_long_analyst_query_keeps_no_writer_waiting(tmp_path):
    """A `shipskip sql` that would run for hours; a vote and an ingest started while it runs
    both succeed, and the query ends at its time limit with one line and exit 2. (Before
    analysts read a snapshot, the query held the file: the vote waited 30 s and was refused.)"""
    from conftest import make_card, make_take

    from shipskip.roster import personas

    db = tmp_path / "busy.duckdb"
    store = Store(db)
    card = make_card(slug="voted-on", name="Voted On")
    store.commit_review(store.begin_run(card), card, [make_take(p, "ship", 80) for p in personas()])
    inbox, log, server, url = _inbox_and_fake(tmp_path, 3, 0.05)
    env = {**os.environ, "SHIPSKIP_DB_PATH": str(db), "SHIPSKIP_QUERY_TIMEOUT_S": "45"}

    started = []

    def shipskip(*args):
        started.append(subprocess.Popen([sys.executable, "-m", "shipskip", *args], env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
        return started[-1]

    try:
        query = shipskip("sql", "SELECT count(*) FROM range(1000000000000) a WHERE hash(a.range) = 42")
        # Give it time to start reading (its snapshot appears beside the file as it does).
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".shipskip-snapshot-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        assert query.poll() is None
        writer = _ingest(inbox, url, db)
        started.append(writer)
        vote = shipskip("vote", "voted-on", "ship", "--voter", "ann")
        v_out, v_err = vote.communicate(timeout=120)
        query_running_after_vote = query.poll() is None
        w_out, w_err = writer.communicate(timeout=300)
        query_running_after_ingest = query.poll() is None
        q_out, q_err = query.communicate(timeout=120)
    finally:
        server.kill()
        for proc in started:  # only if the test failed midway
            if proc.poll() is None:
                proc.kill()
    assert vote.returncode == 0 and "ann's vote recorded" in v_out, v_err
    assert query_running_after_vote  # the vote did not wait for the query to end
    assert writer.returncode == 0 and "reviewed 3" in w_out, w_err
    lines = q_err.strip().splitlines()
    assert query.returncode == 2 and len(lines) == 1 and "SHIPSKIP_QUERY_TIMEOUT_S" in lines[0], q_err
    assert q_out == ""
    after = Store(db)
    assert after.query("SELECT count(*) AS n FROM votes")[0]["n"] == 1
    assert after.query("SELECT count(*) AS n FROM takes")[0]["n"] == 5 * 4
    assert not list(tmp_path.glob(".shipskip-snapshot-*"))
    print(
        f"\n[analyst] vote during a 45 s query: ok; ingest of 3 tools during it: ok "
        f"(query still running when the ingest ended: {query_running_after_ingest}); query: exit 2"
    )


SECRET = "sk-shipskip-TOPSECRET-0123456789"


def test_api_key_never_reaches_db_logs_artifacts_or_pages(holistic, isolated, monkeypatch, capsys, caplog):
    fake = holistic
    import asyncio

    from flows.render import render_comparison
    from flows.review import review_tool

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def answer(req):
        assert req["_auth"] == f"Bearer {SECRET}"  # the key does reach the provider
        if persona_of(req) == "skeptic":  # a hostile provider that echoes the key back in its error
            return Reply(status=400, body=json.dumps({"error": {"message": f"Bad request for key {SECRET}"}}))
        return Reply(content=take_json("ship", 77, lead=lead_of(req)))

    fake.default = answer
    review_tool(card_path=str(ROOT / "data" / "tools" / "claw-code.yaml"))
    review_tool(card_path=str(ROOT / "data" / "tools" / "smollm3.yaml"))
    render_comparison(tool_a="claw-code", tool_b="smollm3")

    store = Store(isolated / "shipskip.duckdb")
    errors = store.query("SELECT error FROM takes WHERE error IS NOT NULL")
    assert errors and all("***" in e["error"] for e in errors)

    from prefect.client.orchestration import get_client

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    arts = asyncio.run(artifacts())
    assert any(a.key == "scorecard-claw-code-vs-smollm3" for a in arts)
    haystacks = {f"artifact {a.key}": str(a.data) for a in arts}
    for path in (isolated).rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("latin-1")
    out = capsys.readouterr()
    haystacks["stdout"], haystacks["stderr"] = out.out, out.err
    haystacks["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    assert any("duckdb" in k for k in haystacks) and any(k.endswith(".html") for k in haystacks)
    leaked = [k for k, v in haystacks.items() if SECRET in v or SECRET[10:] in v]
    assert leaked == []


def test_bad_input_changes_nothing_already_stored(fake, isolated, tmp_path):
    good = tmp_path / "good"
    write_cards(good, 2)
    review_new_tools(source=str(good))
    store = Store(isolated / "shipskip.duckdb")
    snapshot = lambda: store.query("SELECT take_id, slug, score, version FROM takes ORDER BY take_id")  # noqa: E731
    before = snapshot()

    bad = tmp_path / "bad"
    bad.mkdir()
    base = json.loads((good / "tool-000.json").read_text())
    (bad / "a-empty.json").write_text(json.dumps({**base, "name": ""}))
    (bad / "b-missing.json").write_text(json.dumps({k: v for k, v in base.items() if k != "description"}))
    (bad / "c-huge.json").write_text(json.dumps({**base, "description": "x" * 10_000_000}))
    (bad / "d-binary.yaml").write_bytes(b"\x89PNG\x00\x00binary")
    (bad / "e-latin1.yaml").write_bytes("name: Caf\xe9\n".encode("latin-1"))
    (bad / "f-bomb.yaml").write_text('a: &a ["l","l"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n')
    (bad / "g-tag.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    (bad / "h-traversal.json").write_text(json.dumps({**base, "slug": "../../etc/passwd"}))
    (bad / "i-dupe.json").write_text(json.dumps({**base, "description": base["description"] + " Changed."}))
    (bad / "j-dupe.json").write_text(json.dumps({**base, "description": base["description"] + " Again."}))
    (bad / "k-html.json").write_text(json.dumps({**base, "slug": "html-name", "name": "<b>Bold\x07</b>"}))
    report = review_new_tools(source=str(bad))
    refused = report["refused"]
    for name, field in [("a-empty", "name"), ("b-missing", "description"), ("c-huge", "file"),
                        ("d-binary", "file"), ("e-latin1", "file"), ("f-bomb", "file"), ("g-tag", "file"),
                        ("h-traversal", "slug"), ("j-dupe", "slug")]:  # fmt: skip
        line = next((r for r in refused if name in r), None)
        assert line is not None and field in line and "\n" not in line, (name, refused)
    # The changed card is a new version of tool-000 and the HTML name is stored as plain text;
    # nothing that was there before changed.
    assert sorted(report["reviewed"]) == ["html-name", "tool-000"]
    after = {r["take_id"]: r for r in snapshot()}
    assert all(after[r["take_id"]] == r for r in before)
    assert not (ROOT.parent / "etc").exists()
    name = store.query("SELECT name FROM tools WHERE slug = 'html-name'")[0]["name"]
    assert name == "<b>Bold </b>"


def test_a_short_soak_of_everything_at_once_loses_and_doubles_nothing(tmp_path):
    """bench/soak.py for 20 s (docs/reliability.md has the 120 s figures): two ingest loops,
    reruns, votes and analyst queries at once, 10% provider faults, one ingest SIGKILLed."""
    result = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "20", "--json", str(result),
         "--work", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(result.read_text())
    for must_be_zero in ("duplicate reviews", "duplicate takes", "cards never reviewed", "lost votes",
                         "failed votes", "runs left unfinished", "orphan processes", "files holding key bytes"):  # fmt: skip
        assert figures[must_be_zero] == 0, must_be_zero
    assert figures["tools reviewed"] >= 8 and figures["process runs"].get("vote ok", 0) > 0
    print("\n[soak]", {k: v for k, v in figures.items() if k != "work"})


RED_KEY = "sk-red-secret-12345-Qx7vLp9TzWm3"


def test_a_key_returned_whole_or_in_pieces_reaches_no_file_prefect_keeps_nor_the_terminal(fake, isolated):
    """The CLI in processes of its own, on the Prefect API of this test session, against a
    provider that puts the key, whole and in pieces, into takes and into a 401 body: no run of 8
    characters of it in the DuckDB file, the pages, Prefect's database and result storage, or
    the commands' stdout and stderr."""
    from fakeopenai import LeakingTakes
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL

    fake.default = LeakingTakes([RED_KEY, RED_KEY[:19]])
    # The session's Prefect server (a fresh one of the command's own would spend most of its
    # start-up migrating a new database); its SQLite file is searched below.
    prefect_db = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    assert prefect_db.is_file()
    storage = isolated / "prefect-results"
    env = {**os.environ, "OPENAI_API_KEY": RED_KEY, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_LOCAL_STORAGE_PATH": str(storage)}  # fmt: skip

    def shipskip(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shipskip", *args], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    cards = [str(ROOT / "data" / "tools" / n) for n in ("claw-code.yaml", "smollm3.yaml")]
    runs = [shipskip("review", *cards)]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    assert all(r["_auth"] == f"Bearer {RED_KEY}" for r in fake.requests)
    runs += [
        shipskip("show", "claw-code"),
        shipskip("compare", "claw-code", "smollm3"),
        shipskip("page", "smollm3"),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0, 0]
    fake.default = Reply(
        status=401, body=json.dumps({"error": {"message": f"bad key {RED_KEY[:19]}... ({RED_KEY[-12:]})"}})
    )
    refused = shipskip("rerun", "claw-code", "skeptic", "--reason", "the key was rotated")
    assert refused.returncode == 2 and "401" in refused.stderr
    runs.append(refused)

    import duckdb

    with duckdb.connect(str(isolated / "shipskip.duckdb")) as con:
        con.execute("CHECKPOINT")
    files = [*isolated.rglob("*"), *prefect_db.parent.glob(prefect_db.name + "*")]
    found = {str(p): p.read_bytes().decode("latin-1") for p in files if p.is_file()}
    for n, r in enumerate(runs):
        found[f"run {n} stdout"], found[f"run {n} stderr"] = r.stdout, r.stderr
    # The places the key could have gone are all there to be searched.
    assert any(k.endswith(".duckdb") for k in found) and any(k.endswith(".html") for k in found)
    assert any(k.startswith(str(storage)) for k in found), "no Prefect results were kept"
    assert str(prefect_db) in found
    runs_of_eight = {RED_KEY[i : i + 8] for i in range(len(RED_KEY) - 7)}
    leaked = {k: sorted(w for w in runs_of_eight if w in v) for k, v in found.items()}
    assert {k: v for k, v in leaked.items() if v} == {}
    print(f"\n[secrets] places searched={len(found)} requests={len(fake.requests)} leaked=0")
