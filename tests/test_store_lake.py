"""The DuckLake store on a real PostgreSQL catalog: leases across processes, schema sync,
secrets, and three worker processes (one killed) sharing one lake.

The store's everyday behaviour runs on the lake too: test_store.py and test_analytics.py take
the `store` fixture, which gives each of their tests on both backends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_card, make_take
from reliability_helpers import descendants, logged_requests, start_fake_process, write_cards

from shipskip.errors import ShipskipError
from shipskip.settings import get_settings
from shipskip.store import Store, ToolBusy, migrations

pytestmark = pytest.mark.slow

P = ["builder", "skeptic", "futurist", "creator", "founder"]


def five():
    return [make_take(p, "ship", 70) for p in P]


def leases(postgres, store: Store) -> list[tuple[str, str]]:
    dbname = dict(kv.split("=") for kv in store.lake.catalog.split())["dbname"]
    out = postgres.psql("SELECT slug, owner FROM shipskip_tool_leases ORDER BY slug", dbname)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def kept_checkpoints(postgres, store: Store) -> list[tuple[str, str]]:
    """The checkpoints the lake keeps beside its leases, in PostgreSQL: (run id, persona)."""
    dbname = dict(kv.split("=") for kv in store.lake.catalog.split())["dbname"]
    out = postgres.psql("SELECT run_id, persona FROM shipskip_take_checkpoints ORDER BY 1, 2", dbname)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from conftest import make_card, make_take
    from shipskip.settings import get_settings
    from shipskip.store import Store
    store = Store.from_settings(get_settings())
    run = store.begin_run(make_card())
    store.checkpoint(run, make_take("builder", "ship", 81))
    print(run.run_id, flush=True)
    time.sleep(120)
    """
)


def test_a_tool_another_live_process_holds_is_busy_and_taken_over_once_it_dies(lake, postgres):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT / "tests")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        run_id = holder.stdout.readline().strip()
        assert run_id, holder.stderr.read()
        assert [owner.rsplit(":", 1)[1] for _, owner in leases(postgres, lake)] == [str(holder.pid)]
        with pytest.raises(ToolBusy, match=f":{holder.pid}"):
            lake.begin_run(make_card())
        with pytest.raises(ToolBusy):
            lake.begin_run(make_card(), kind="rerun", rerun_reason="an editor, meanwhile")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    run = lake.begin_run(make_card())  # its holder is dead: the run is resumed, not restarted
    assert run.run_id == run_id and run.resumed
    assert lake.checkpoints(run)["builder"].score == 81
    assert kept_checkpoints(postgres, lake) == [(run_id, "builder")]  # one statement, beside the lease
    lake.commit_review(run, make_card(), five())
    assert leases(postgres, lake) == []  # a commit gives the lease back
    assert kept_checkpoints(postgres, lake) == []  # and forgets its checkpoints
    assert lake.begin_run(make_card(), unless_reviewed=True) is None
    assert leases(postgres, lake) == []


RACER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from conftest import make_card, make_take
    from shipskip.settings import get_settings
    from shipskip.store import Store, ToolBusy
    store = Store.from_settings(get_settings())
    start = float(sys.argv[2])
    time.sleep(max(0, start - time.time()))
    todo = [make_card(slug=f"tool-{i}", name=f"Tool {i}") for i in range(int(sys.argv[3]))]
    mine = []
    while todo:
        card = todo.pop(0)
        try:
            run = store.begin_run(card, unless_reviewed=True)
        except ToolBusy:
            todo.append(card)
            time.sleep(0.05)
            continue
        if run is not None:
            takes = [make_take(p, "ship", 70) for p in ["builder", "skeptic", "futurist", "creator", "founder"]]
            for t in takes[:2]:
                store.checkpoint(run, t)
            store.commit_review(run, card, takes)
            mine.append(card.slug)
    print(json.dumps(mine))
    """
)


def together(script: str, n: int, *args: str) -> list[tuple[str, str]]:
    """Run `script` in n processes that open the lake first, then start at the same moment;
    each must exit 0. Their (stdout, stderr)."""
    start = time.time() + 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(ROOT / "tests"), str(start), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(n)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    return results


def test_four_processes_racing_over_twelve_tools_review_each_once(lake, postgres):
    lake.init()
    results = together(RACER, 4, "12")
    claimed = [slug for out, _ in results for slug in json.loads(out.strip().splitlines()[-1])]
    assert sorted(claimed) == sorted(f"tool-{i}" for i in range(12))  # each once, none twice
    runs = lake.query("SELECT slug, count(*) AS n FROM runs WHERE status = 'complete' GROUP BY slug")
    assert len(runs) == 12 and all(r["n"] == 1 for r in runs)
    assert lake.query("SELECT count(*) AS n FROM takes")[0]["n"] == 60
    assert lake.query("SELECT count(*) AS n FROM runs WHERE status <> 'complete'")[0]["n"] == 0
    assert lake.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 0
    assert leases(postgres, lake) == []
    assert kept_checkpoints(postgres, lake) == []


def test_leases_of_gone_holders_are_swept_and_live_ones_kept(lake, postgres):
    lake.init()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    gone = f"{socket.gethostname()}:{dead}"
    with lake.connect() as con:
        lake.lake.ensure_leases(con)
        assert lake.lake.claim(con, "tool-a", gone, lambda owner, beat: True) is None
    lake.db.claim("tool-b")  # this process: alive
    assert lake.sweep_leases() == ["tool-a"]
    assert [slug for slug, _ in leases(postgres, lake)] == ["tool-b"]
    lake.db.release("tool-b")


def in_one_group(store: Store, calls: list) -> list:
    """Run each call on a thread of its own while the group's turn is held, so all of them are
    queued when it is let go and one thread writes them together: what each returned or raised."""
    import threading

    group = store.ledger.group
    out: list = [None] * len(calls)

    def call(i: int) -> None:
        try:
            out[i] = calls[i]()
        except Exception as exc:  # what that thread's caller would have seen
            out[i] = exc

    with group._turn:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(group._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group._queue) == len(calls)
    for t in threads:
        t.join()
    return out


def test_reviews_that_finish_together_commit_in_one_transaction_each_whole(lake, postgres):
    lake.init()
    cards = [make_card(slug=f"tool-{i}", name=f"Tool {i}") for i in range(4)]
    runs = [lake.begin_run(card) for card in cards]
    for run in runs:
        lake.checkpoint(run, make_take("builder", "ship", 70))
    snapshots = lake.query("SELECT count(*) AS n FROM ducklake_snapshots('lake')")[0]["n"]
    out = in_one_group(
        lake,
        [
            lambda r=run, c=card: lake.commit_review(r, c, five())
            for run, card in zip(runs, cards, strict=True)
        ],
    )
    assert out == [None] * 4
    # One DuckLake commit for the four reviews, not four.
    assert lake.query("SELECT count(*) AS n FROM ducklake_snapshots('lake')")[0]["n"] == snapshots + 1
    done = lake.query("SELECT slug, status, label, ship FROM runs ORDER BY slug")
    assert [(r["slug"], r["status"], r["label"], r["ship"]) for r in done] == [
        (c.slug, "complete", "Ship", 5) for c in cards
    ]
    takes = lake.query("SELECT slug, count(*) AS n, bool_and(is_current) AS cur FROM takes GROUP BY slug")
    assert sorted((r["slug"], r["n"], r["cur"]) for r in takes) == [(c.slug, 5, True) for c in cards]
    assert lake.query("SELECT count(*) AS n FROM tools")[0]["n"] == 4
    assert lake.query("SELECT count(*) AS n FROM tool_versions")[0]["n"] == 4
    assert leases(postgres, lake) == [] and kept_checkpoints(postgres, lake) == []
    # A second review of one of them in a group: versions follow, the old takes stop being current.
    card = cards[0].model_copy(update={"tagline": "Does a newer thing"})
    again = lake.begin_run(card, unless_reviewed=True)
    assert again is not None
    newer = [make_take(p, "skip", 20) for p in P]
    assert in_one_group(lake, [lambda: lake.commit_review(again, card, newer)]) == [None]
    cur = lake.query("SELECT version, verdict FROM current_takes WHERE slug = 'tool-0'")
    assert {(r["version"], r["verdict"]) for r in cur} == {(2, "skip")}
    assert lake.query("SELECT content_hash FROM tools WHERE slug = 'tool-0'")[0]["content_hash"] == (
        card.content_hash()
    )


def test_a_bad_review_in_a_group_costs_that_review_only(lake, postgres):
    lake.init()
    cards = [make_card(slug=f"tool-{i}", name=f"Tool {i}") for i in range(3)]
    runs = [lake.begin_run(card) for card in cards]
    bad = [*five()[:4], make_take("founder", "ship", 70).model_copy(update={"score": 10})]
    for run in runs:
        lake.checkpoint(run, make_take("builder", "ship", 70))
    out = in_one_group(
        lake,
        [
            lambda: lake.commit_review(runs[0], cards[0], five()),
            lambda: lake.commit_review(runs[1], cards[1], bad),
            lambda: lake.commit_review(runs[2], cards[2], five()),
        ],
    )
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], ShipskipError) and "does not follow" in str(out[1])
    status = {r["slug"]: r["status"] for r in lake.query("SELECT slug, status FROM runs")}
    assert status == {"tool-0": "complete", "tool-1": "running", "tool-2": "complete"}
    assert lake.query("SELECT DISTINCT slug FROM takes ORDER BY slug") == [
        {"slug": "tool-0"},
        {"slug": "tool-2"},
    ]
    # The failed one is resumable: its lease and its checkpoint stand.
    assert [slug for slug, _ in leases(postgres, lake)] == ["tool-1"]
    assert kept_checkpoints(postgres, lake) == [(runs[1].run_id, "builder")]


def test_runs_started_together_are_answered_each_as_alone(lake, postgres):
    lake.init()
    done, busy, taken = (make_card(slug=s, name=s.title()) for s in ("done", "busy", "taken"))
    lake.commit_review(lake.begin_run(done), done, five())
    lake.commit_review(lake.begin_run(taken), taken, five())
    held = lake.begin_run(busy)
    with lake.transaction() as con:  # as if another machine held it and was alive just now
        con.execute("UPDATE runs SET owner = 'otherhost:123', heartbeat_at = now()::TIMESTAMP")
    lake.db.release("busy")
    fresh = make_card(slug="fresh", name="Fresh")
    other = make_card(slug="taken", name="Someone Else")
    out = in_one_group(
        lake,
        [
            lambda: lake.begin_run(done, unless_reviewed=True),
            lambda: lake.begin_run(busy, unless_reviewed=True),
            lambda: lake.begin_run(other, unless_reviewed=True),
            lambda: lake.begin_run(fresh, unless_reviewed=True),
        ],
    )
    assert out[0] is None
    assert isinstance(out[1], ToolBusy) and "otherhost:123" in str(out[1])
    assert isinstance(out[2], ShipskipError) and "already belongs to" in str(out[2])
    assert out[3].slug == "fresh" and not out[3].resumed
    running = lake.query("SELECT run_id, slug FROM runs WHERE status = 'running' ORDER BY slug")
    assert running == [{"run_id": held.run_id, "slug": "busy"}, {"run_id": out[3].run_id, "slug": "fresh"}]
    # Only the started one keeps its lease.
    assert [slug for slug, _ in leases(postgres, lake)] == ["fresh"]


VOTER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from shipskip.settings import get_settings
    from shipskip.store import Store
    store = Store.from_settings(get_settings())
    store.votes("tool-0")  # open the lake before the start
    time.sleep(max(0, float(sys.argv[2]) - time.time()))
    for i in range(8):
        store.add_vote("tool-0", "ship" if i % 2 else "skip", "ana")
    """
)


def test_one_voter_voting_from_three_machines_at_once_has_one_vote(lake):
    # A vote is a read (has this voter voted?) then an insert or an update, and the lake has
    # no unique key. DuckLake refuses the later of two overlapping commits to the table and the
    # store runs the vote again, reading afresh (without that retry this test fails).
    card = make_card(slug="tool-0", name="Tool 0")
    run = lake.begin_run(card)
    lake.commit_review(run, card, five())
    together(VOTER, 3)
    rows = lake.query("SELECT voter, count(*) AS n FROM votes GROUP BY voter")
    assert rows == [{"voter": "ana", "n": 1}]
    assert sum(lake.votes("tool-0").model_dump().values()) == 1


MARKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from shipskip.settings import get_settings
    from shipskip.store import Store
    store = Store.from_settings(get_settings())
    store.votes("tool-0")  # open the lake before the start
    time.sleep(max(0, float(sys.argv[2]) - time.time()))
    for i in range(8):
        store.add_marks([("vote", "tool-0", "ship" if i % 2 else "skip", "ana"),
                         ("helpful", "tool-0", "builder", "ana")])
    """
)


def test_one_reader_voting_from_three_web_servers_at_once_has_one_vote(lake):
    # The web's batched writes (`add_marks`) read then insert as `add_vote` does, so they take
    # the same per-tool-and-voter lock on a lake.
    card = make_card(slug="tool-0", name="Tool 0")
    lake.commit_review(lake.begin_run(card), card, five())
    together(MARKER, 3)
    assert lake.query("SELECT voter, count(*) AS n FROM votes GROUP BY voter") == [{"voter": "ana", "n": 1}]
    marks = lake.query("SELECT persona, voter, count(*) AS n FROM helpful_marks GROUP BY ALL")
    assert marks == [{"persona": "builder", "voter": "ana", "n": 1}]


def test_a_readers_batched_vote_waits_for_the_voters_lock_another_machine_holds(lake):
    card = make_card(slug="tool-0", name="Tool 0")
    lake.commit_review(lake.begin_run(card), card, five())
    other = "otherhost:123"  # another machine, alive: it beat just now
    with lake.connect() as con:
        assert lake.lake.claim(con, "vote:tool-0:ana", other, lambda owner, beat: True) is None
    lake.lock_wait_s = 0.3
    with pytest.raises(ToolBusy, match=other):
        lake.add_marks([("vote", "tool-0", "ship", "ana")])
    assert lake.votes("tool-0").model_dump() == {"ship": 0, "skip": 0}
    with lake.connect() as con:
        lake.lake.release(con, "vote:tool-0:ana", other)
    assert lake.add_marks([("vote", "tool-0", "ship", "ana")]) == ["recorded"]
    assert lake.votes("tool-0").model_dump() == {"ship": 1, "skip": 0}


def test_maintenance_folds_small_files_and_expires_old_snapshots_losing_nothing(lake, isolated):
    from typer.testing import CliRunner

    from shipskip.cli import app

    for i in range(6):  # six commits: six small files for the tools table, rows inlined elsewhere
        card = make_card(slug=f"tool-{i}", name=f"Tool {i}")
        lake.commit_review(lake.begin_run(card), card, five())
    card = make_card(slug="tool-0", name="Tool 0")
    run = lake.begin_run(card, kind="rerun", rerun_reason="an editor's second look")
    lake.commit_review(run, card, [make_take(p, "skip", 41) for p in P])

    def stored():
        return (
            lake.query("SELECT slug, persona, verdict, score FROM current_takes ORDER BY slug, persona"),
            lake.query("SELECT count(*) AS n FROM takes")[0]["n"],
        )

    tools_files = isolated / "lake" / "main" / "tools"
    before = stored()
    assert before[1] == 35 and len(list(tools_files.glob("*.parquet"))) >= 6

    # Within a week's window: files fold, but no snapshot is that old, so none goes.
    done = lake.maintain(keep_days=7)
    assert done["small_files_merged"] > done["files_written"] >= 1
    assert done["snapshots_expired"] == 0 and done["old_files_deleted"] == 0
    assert stored() == before

    # Keeping nothing: every snapshot but the newest expires and the set-aside files go.
    shown = CliRunner().invoke(app, ["maintain", "--keep-days", "0"])
    assert shown.exit_code == 0, shown.output
    figures = dict(line.split(": ") for line in shown.output.strip().splitlines())
    assert int(figures["snapshots expired"]) > 0 and int(figures["old files deleted"]) >= 6
    assert len(list(tools_files.glob("*.parquet"))) < 6
    # What is left on disk is exactly what the lake still reads.
    tables = [
        r["table_name"]
        for r in lake.query("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'")
    ]
    used = {
        Path(f).resolve()
        for t in tables
        for r in lake.query(f"SELECT data_file, delete_file FROM ducklake_list_files('lake', '{t}')")
        for f in (r["data_file"], r["delete_file"])
        if f
    }
    assert {p.resolve() for p in (isolated / "lake").rglob("*.parquet")} == used
    assert stored() == before

    # The lake takes the next review as before.
    card = make_card(slug="tool-6", name="Tool 6")
    lake.commit_review(lake.begin_run(card), card, five())
    assert len(lake.current_takes("tool-6")) == 5


def test_a_new_migration_reaches_an_existing_lake(lake, monkeypatch):
    lake.init()
    card = make_card()
    lake.commit_review(lake.begin_run(card), card, five())
    extra = (999, "999_mood.sql", "ALTER TABLE takes ADD COLUMN mood VARCHAR;\n"
             "CREATE VIEW moods AS SELECT slug, persona, mood FROM takes;")  # fmt: skip
    monkeypatch.setattr("shipskip.migrate.migrations", lambda: [*migrations(), extra])
    later = Store.from_settings(get_settings())
    rows = later.query("SELECT * FROM moods ORDER BY persona")
    assert len(rows) == 5 and all(r["mood"] is None for r in rows)
    assert later.query("SELECT max(version) AS v FROM schema_migrations")[0]["v"] == 999
    # The one price row migration 003 seeds came with the new table, and not again with 999.
    assert later.query("SELECT count(*) AS n FROM model_prices")[0]["n"] == 1


def test_the_catalogs_password_never_reaches_an_error(postgres, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_CATALOG", f"host=127.0.0.1 port={postgres.port} dbname=nowhere "
                       "user=postgres password=hunter2-do-not-print")  # fmt: skip
    monkeypatch.setenv("SHIPSKIP_LAKE_DATA_PATH", str(isolated / "lake"))
    store = Store.from_settings(get_settings())
    with pytest.raises(ShipskipError) as caught:
        store.init()
    assert "hunter2" not in str(caught.value) and "password=***" in str(caught.value)
    assert "hunter2" not in repr(store.lake)
    from typer.testing import CliRunner

    from shipskip.cli import app

    res = CliRunner().invoke(app, ["history", "demo-tool"])
    assert res.exit_code != 0 and "hunter2" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def _worker(inbox, url, env_extra):
    env = {**os.environ, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_MODEL": "fake-model",
           "SHIPSKIP_SCORING": "holistic", "SHIPSKIP_LLM_CONCURRENCY": "5", **env_extra}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "shipskip", "ingest", str(inbox)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def test_three_workers_one_killed_midway_review_sixty_tools_exactly_once(lake, postgres, tmp_path):
    """Three processes standing in for three machines ingest one feed into one lake."""
    lake.init()
    inbox = tmp_path / "inbox"
    slugs = write_cards(inbox, 60)
    log = tmp_path / "requests.jsonl"
    server, url = start_fake_process(0.2, log)
    workers = []
    try:
        workers = [_worker(inbox, url, {}) for _ in range(3)]
        # Midway: once a fifth of the seats were asked, kill a worker that holds tools right now.
        by_pid = {str(w.pid): w for w in workers}
        deadline = time.monotonic() + 240
        held: list[str] = []
        while time.monotonic() < deadline:
            if len(logged_requests(log)) >= 60:
                owners = [(slug, owner.rsplit(":", 1)[1]) for slug, owner in leases(postgres, lake)]
                if owners and owners[0][1] in by_pid:
                    victim = by_pid[owners[0][1]]
                    held = [slug for slug, pid in owners if pid == owners[0][1]]
                    break
            time.sleep(0.1)
        assert held, "no worker held a tool midway"
        doomed = descendants(victim.pid)
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its temporary Prefect API
        victim.communicate(timeout=30)
        survivors = [w for w in workers if w is not victim]
        outs = [w.communicate(timeout=480) for w in survivors]
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
        server.kill()
    assert victim.returncode == -signal.SIGKILL and doomed
    assert all(w.returncode == 0 for w in survivors), [err[-3000:] for _, err in outs]
    runs = lake.query(
        "SELECT slug, count(*) AS n FROM runs WHERE kind = 'review' AND status = 'complete' GROUP BY slug"
    )
    assert sorted(r["slug"] for r in runs) == slugs and all(r["n"] == 1 for r in runs)
    takes = lake.query("SELECT slug, persona, count(*) AS n FROM takes GROUP BY slug, persona")
    assert len(takes) == 300 and all(t["n"] == 1 for t in takes)  # none lost, none doubled
    assert lake.query("SELECT count(*) AS n FROM current_takes")[0]["n"] == 300
    assert lake.query("SELECT count(*) AS n FROM runs WHERE status = 'running'")[0]["n"] == 0
    assert leases(postgres, lake) == []
    # The tools the killed worker held were finished by the others, resumed from its checkpoints,
    # save any it committed itself in the instant between our reading its leases and the kill
    # landing (complete, as checked above; the others' closing sweep removed those leases).
    taken_over = lake.query("SELECT slug, owner FROM runs WHERE slug IN (SELECT unnest(?))", [held])
    assert len(taken_over) == len(held)
    owners = {r["owner"].rsplit(":", 1)[1] for r in taken_over}
    assert owners <= {str(w.pid) for w in workers}
    asked = {(r["tool"], r["persona"]) for r in logged_requests(log)}
    assert len(asked) == 300  # every seat of every tool was asked
    print(f"\n[scale] 3 workers, 1 killed holding {len(held)} tools: 60 tools, {len(takes)} takes, "
          f"{len(logged_requests(log))} requests for 300 seats")  # fmt: skip
