import duckdb
import pytest
from conftest import make_card, make_take

from shipskip.store import Store, migrations

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


def five(verdicts=("ship", "ship", "skip", "ship", None)):
    return [
        make_take(p, v, None if v is None else (80 if v == "ship" else 30))
        for p, v in zip(PERSONAS, verdicts, strict=True)
    ]


def test_migrations_are_numbered_and_recorded(store):
    store.init()
    store.init()  # idempotent
    rows = store.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m[0] for m in migrations()]
    assert rows[0]["name"] == "001_init.sql"


def test_a_review_commits_takes_and_verdict_together(store):
    card = make_card()
    run = store.begin_run(card)
    store.commit_review(run, card, five())
    rows = store.query("SELECT persona, version, verdict, score, model, prompt_hash FROM takes")
    assert len(rows) == 5 and all(r["version"] == 1 for r in rows)
    r = store.query("SELECT status, label, ship, skip, abstain, ship_pct FROM runs")[0]
    assert (r["status"], r["label"], r["ship"], r["skip"], r["abstain"], r["ship_pct"]) == (
        "complete",
        "Ship",
        3,
        1,
        1,
        75,
    )
    assert store.is_reviewed(card)
    view = store.query("SELECT label, ship_pct FROM panel_verdicts WHERE slug = 'demo-tool'")[0]
    assert (view["label"], view["ship_pct"]) == ("Ship", 75)


def test_failed_commit_leaves_nothing_half_written(store, monkeypatch):
    card = make_card()
    run = store.begin_run(card)
    from shipskip import ledger

    real, written = ledger.insert_takes, []

    def written_then_fails(con, run, takes, now):
        real(con, run, takes, now)  # the takes are in, inside the transaction
        written.append(con.execute("SELECT count(*) FROM takes").fetchone()[0])
        raise duckdb.ConversionException("the run's status cannot be written")

    monkeypatch.setattr(ledger, "insert_takes", written_then_fails)
    with pytest.raises(duckdb.ConversionException):
        store.commit_review(run, card, five())
    assert written == [5]
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM tools")[0]["n"] == 0
    assert store.query("SELECT status FROM runs")[0]["status"] == "running"
    assert not store.is_reviewed(card)


def test_checkpoints_let_an_interrupted_run_resume(store):
    card = make_card()
    run = store.begin_run(card)
    for t in five()[:2]:
        store.checkpoint(run, t)
    again = store.begin_run(card)
    assert again.run_id == run.run_id and again.resumed
    assert sorted(store.checkpoints(again)) == ["builder", "skeptic"]
    # Readers see no take of an unfinished review.
    assert store.query("SELECT count(*) AS n FROM current_takes")[0]["n"] == 0
    store.commit_review(again, card, five())
    assert store.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 0


def test_read_only_connection_refuses_writes(store):
    store.init()
    with store.connect(read_only=True) as con, pytest.raises(duckdb.Error):
        con.execute("CREATE TABLE x (a INT)")


def test_database_file_lives_where_settings_say(isolated):
    s = Store(isolated / "nested" / "db.duckdb")
    s.init()
    assert (isolated / "nested" / "db.duckdb").is_file()


@pytest.mark.slow
def test_a_tool_has_one_writer_at_a_time(store):
    import subprocess
    import sys
    from datetime import timedelta

    import pytest

    from shipskip.store import ToolBusy

    card = make_card()
    run = store.begin_run(card)
    with store.transaction() as con:  # as if another machine held it and was alive just now
        con.execute("UPDATE runs SET owner = 'otherhost:123', heartbeat_at = now()::TIMESTAMP")
    with pytest.raises(ToolBusy, match="otherhost:123"):
        store.begin_run(card)
    with pytest.raises(ToolBusy):
        store.begin_run(card, kind="rerun", rerun_reason="x")
    with store.transaction() as con:  # silent for longer than the lease: taken over
        con.execute("UPDATE runs SET heartbeat_at = heartbeat_at - ?", [timedelta(seconds=store.lease_s + 1)])
    again = store.begin_run(card)
    assert again.run_id == run.run_id and again.resumed
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    with store.transaction() as con:  # a dead process on this machine: taken over at once
        con.execute("UPDATE runs SET owner = ?, heartbeat_at = now()::TIMESTAMP",
                    [f"{socket.gethostname()}:{gone.stdout.strip()}"])  # fmt: skip
    assert store.begin_run(card).run_id == run.run_id
    store.commit_review(run, card, [make_take(p, "ship", 70) for p in PERSONAS])
    assert store.begin_run(card, unless_reviewed=True) is None


@pytest.mark.slow
def test_a_writer_that_cannot_get_the_database_names_the_holder(tmp_path):
    import subprocess
    import sys
    import time

    import pytest

    from shipskip.errors import ShipskipError

    db = tmp_path / "held.duckdb"
    Store(db).init()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(ShipskipError) as e:
            Store(db, lock_wait_s=0.5).add_vote("x", "ship", "ana")
        assert f"process {holder.pid}" in str(e.value) and "\n" not in str(e.value)
        assert time.monotonic() - started < 15
    finally:
        holder.kill()


def test_a_reader_brings_an_older_database_up_to_date(tmp_path):
    import duckdb

    from shipskip.store import migrations

    path = tmp_path / "old.duckdb"
    older = [m for m in migrations() if m[0] <= 7]
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP NOT NULL)"
        )
        for version, name, sql in older:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    # An analyst's first query reads a column a later migration added.
    assert Store(path).query("SELECT count(*) AS n, max(flagged) AS f FROM panel_verdicts")[0]["n"] == 0
    versions = [r["version"] for r in Store(path).query("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m[0] for m in migrations()]


@pytest.mark.slow
def test_the_sql_view_applies_the_same_verdict_rule_as_aggregate(store):
    """The verdict rule lives in panel.aggregate; panel_verdicts restates it for analysts.
    The rule depends only on how many seats ship, skip and abstain (and how many are flagged),
    so one panel per count of each, flagged and not, covers it."""
    import itertools

    from shipskip.panel import aggregate

    combos = list(itertools.combinations_with_replacement(["ship", "skip", None], 5))  # 21
    expected = {}
    for n, (i, verdicts) in enumerate(itertools.product((0, 1, 2, 3), combos)):
        card = make_card(slug=f"t{n}", name=f"T{n}")
        takes = five(verdicts)
        if i % 2 and verdicts[1] is not None:  # half of them with the second seat flagged
            takes[1] = takes[1].model_copy(update={"suspicious": True})
        if i >= 2:  # and half with the third seat not counted, and each seat's P(ship) known
            takes[2] = takes[2].model_copy(update={"counted": False, "not_counted_reason": "no signal"})
            takes = [t.model_copy(update={"p_ship": round(0.9 - 0.15 * k, 2)}) for k, t in enumerate(takes)]
        run = store.begin_run(card)
        store.commit_review(run, card, takes)
        v = aggregate(takes)
        expected[card.slug] = (
            v.label,
            v.ship,
            v.skip,
            v.abstain,
            v.ship_pct,
            v.flagged,
            v.not_counted,
            v.flip_chance,
        )
    rows = store.query(
        "SELECT slug, label, ship, skip, abstain, ship_pct, flagged, not_counted, flip_chance FROM panel_verdicts"
    )
    got = {
        r["slug"]: (
            r["label"], r["ship"], r["skip"], r["abstain"], r["ship_pct"], r["flagged"], r["not_counted"],
            r["flip_chance"],
        )
        for r in rows
    }  # fmt: skip
    assert {k: v[:7] for k, v in got.items()} == {k: v[:7] for k, v in expected.items()}
    for slug, v in got.items():  # summed in another order: equal up to rounding
        assert (v[7] is None) == (expected[slug][7] is None)
        assert v[7] is None or abs(v[7] - expected[slug][7]) < 1e-3, slug
    assert any(v[0] == "No verdict" and v[1] + v[2] == 1 for v in got.values())  # one counted seat
    assert sum(v[7] is not None for v in got.values()) > 10 and any(
        0 < v[7] < 1 for v in got.values() if v[7]
    )


RANKED = (
    "SELECT take_id FROM (SELECT t.take_id, row_number() OVER (PARTITION BY t.slug, t.persona"
    " ORDER BY t.version DESC) AS rn FROM takes t JOIN runs r USING (run_id) WHERE r.status = 'complete')"
    " WHERE rn = 1"
)


@pytest.mark.slow
def test_the_current_flag_marks_exactly_the_latest_committed_take(store, tmp_path):
    """current_takes filters on a flag the store keeps at commit: it must be the same set the
    ranking of every committed take gives, after reviews, reruns, a failed rerun, a run left
    uncommitted, and a reload from Parquet."""
    card = make_card()
    store.commit_review(store.begin_run(card), card, five(["ship", "skip", "ship", None, "skip"]))
    for score in (40, 75):
        rerun = store.begin_run(card, kind="rerun", rerun_reason="again")
        store.commit_review(rerun, card, [make_take("skeptic", "ship" if score >= 60 else "skip", score)])
    failed = store.begin_run(card, kind="rerun", rerun_reason="broken")
    store.fail_rerun(failed, make_take("founder", None, None), "broken")
    store.begin_run(make_card(slug="other", name="Other"))  # started, never committed

    def ids(sql):
        return sorted(r["take_id"] for r in store.query(sql))

    assert ids("SELECT take_id FROM current_takes") == ids(RANKED)
    assert [t.score for t in store.current_takes("demo-tool") if t.persona == "skeptic"] == [75]
    exported = tmp_path / "takes.parquet"
    with store.connect(read_only=True) as con:
        con.execute(f"COPY (SELECT * EXCLUDE (is_current) FROM takes) TO '{exported}' (FORMAT parquet)")
        runs = tmp_path / "runs.parquet"
        con.execute(f"COPY runs TO '{runs}' (FORMAT parquet)")
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.load_parquet("runs", runs)
    fresh.load_parquet("takes", exported)  # an export from before the flag existed
    assert sorted(r["take_id"] for r in fresh.query("SELECT take_id FROM current_takes")) == ids(RANKED)


# take_changes as migration 012 computed it: each committed take beside version - 1.
BY_JOIN = (
    "WITH c AS (SELECT t.*, r.kind, r.reason AS run_reason FROM takes t JOIN runs r USING (run_id)"
    " WHERE r.status = 'complete')"
    " SELECT t.slug, t.persona, t.version, p.score AS a, t.score, t.score - p.score AS d, p.verdict AS b,"
    " t.verdict, p.model AS c, t.model, p.prompt_version AS e, t.prompt_version, t.kind, t.run_reason,"
    " t.created_at"
    " FROM c t JOIN c p ON p.slug = t.slug AND p.persona = t.persona AND p.version = t.version - 1"
)


@pytest.mark.slow
def test_take_changes_reads_what_a_join_of_every_take_finds(store, tmp_path):
    """Migration 014 has each take keep what it replaced; the view must give what joining every
    take to its previous version gave: after reviews, reruns on other models, a changed card,
    a reload from an export without those columns, and an older database brought up to date."""
    card, other = make_card(), make_card(slug="other", name="Other")
    for c in (card, other):
        store.commit_review(store.begin_run(c), c, five())
    for score, model in ((40, "gpt-a"), (75, "gpt-b")):
        rerun = store.begin_run(card, kind="rerun", rerun_reason="again")
        take = make_take("skeptic", "ship" if score >= 60 else "skip", score).model_copy(
            update={"model": model}
        )
        store.commit_review(rerun, card, [take])
    changed = card.model_copy(update={"description": card.description + " Now with a CLI."})
    store.commit_review(store.begin_run(changed), changed, five(["skip", None, "ship", "ship", "skip"]))

    def rows(s, sql):
        return sorted(tuple(r.values()) for r in s.query(sql))

    expected = rows(store, BY_JOIN)
    assert len(expected) == 7 and rows(store, "SELECT * FROM take_changes") == expected
    exported, runs = tmp_path / "takes.parquet", tmp_path / "runs.parquet"
    with store.connect(read_only=True) as con:
        con.execute(
            "COPY (SELECT * EXCLUDE (is_current, prev_score, prev_verdict, prev_model, prev_prompt_version,"
            f" calibration, uncalibrated) FROM takes) TO '{exported}' (FORMAT parquet)"
        )
        con.execute(f"COPY runs TO '{runs}' (FORMAT parquet)")
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.load_parquet("runs", runs)
    fresh.load_parquet("takes", exported)  # an export from before migration 014
    assert rows(fresh, "SELECT * FROM take_changes") == expected
    if store.lake is not None:
        return
    # A file written by migrations up to 013, with these takes in it, brought up to date.
    old = tmp_path / "old.duckdb"
    with duckdb.connect(str(old)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP NOT NULL)"
        )
        for version, name, sql in [m for m in migrations() if m[0] <= 13]:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        con.execute(f"INSERT INTO runs BY NAME SELECT * FROM read_parquet('{runs}')")
        # Only the exported columns a file at 013 has: later migrations add columns to takes.
        at_013 = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns"
                                            " WHERE table_name = 'takes'").fetchall()}  # fmt: skip
        exported_columns = [
            r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{exported}')").fetchall()
        ]
        old_columns = ", ".join(c for c in exported_columns if c in at_013)
        con.execute(f"INSERT INTO takes BY NAME SELECT {old_columns} FROM read_parquet('{exported}')")
    assert rows(Store(old), "SELECT * FROM take_changes") == expected


def test_a_load_refuses_takes_whose_run_is_not_complete(store, tmp_path):
    """Views read every take as committed (migration 016), so takes load only with their runs."""
    from shipskip.errors import ShipskipError

    card = make_card()
    store.commit_review(store.begin_run(card), card, five())
    exported = tmp_path / "takes.parquet"
    with store.connect(read_only=True) as con:
        con.execute(f"COPY (SELECT * EXCLUDE (is_current) FROM takes) TO '{exported}' (FORMAT parquet)")
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.init()
    with pytest.raises(ShipskipError, match=r"takes\.parquet: run_id: 5 takes belong to no completed run"):
        fresh.load_parquet("takes", exported)
    assert fresh.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0  # nothing half-loaded
    assert [r["n"] for r in store.query("SELECT count(*) AS n FROM committed_takes")] == [5]


@pytest.mark.slow
def test_a_take_whose_verdict_does_not_follow_its_score_is_refused_on_both_backends(store, tmp_path):
    """The single file's CHECK, which a lake cannot hold, asked by the store of every take."""
    from shipskip.errors import ShipskipError

    card = make_card()
    with pytest.raises(ShipskipError, match=r"demo-tool: skeptic: verdict 'ship' does not follow score 40"):
        store.commit_review(store.begin_run(card), card, [*five()[:1], make_take("skeptic", "ship", 40)])
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0  # nothing half-written

    store.commit_review(store.begin_run(card), card, five())
    exported = tmp_path / "takes.parquet"
    runs = tmp_path / "runs.parquet"
    with store.connect(read_only=True) as con:
        con.execute(f"COPY (SELECT * FROM runs) TO '{runs}' (FORMAT parquet)")
        con.execute(
            "COPY (SELECT * EXCLUDE (is_current, verdict), CASE WHEN persona = 'builder' THEN 'skip'"
            f" ELSE verdict END AS verdict FROM takes) TO '{exported}' (FORMAT parquet)"
        )
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.init()
    fresh.load_parquet("runs", runs)
    with pytest.raises(ShipskipError, match=r"takes\.parquet: verdict: 'skip' does not follow score 80"):
        fresh.load_parquet("takes", exported)
    assert fresh.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0


def test_maintenance_refuses_a_negative_window_on_the_single_file_too(file_store):
    from shipskip.errors import ShipskipError

    with pytest.raises(ShipskipError, match="--keep-days must be 0 or more"):
        file_store.maintain(-1)
    assert file_store.maintain(0) is None


def test_reviewed_among_answers_for_a_whole_feed_at_once(store):
    seen, changed, new = make_card(), make_card(slug="b", name="B"), make_card(slug="c", name="C")
    for card in (seen, changed):
        store.commit_review(store.begin_run(card), card, five())
    changed = changed.model_copy(update={"description": changed.description + " Now with a CLI."})
    assert store.reviewed_among([seen, changed, new]) == {"demo-tool"}
    assert store.reviewed_among([]) == set()


def _racing_checkpoints(store, monkeypatch, fail_calls=()):
    """Ten seats of ten runs checkpoint at once; the first write is slowed so the rest queue.
    Returns (batch sizes written or failed, the seats whose checkpoint raised)."""
    import threading
    import time

    store.init()
    runs = [store.begin_run(make_card(slug=f"t-{i}", name=f"T {i}")) for i in range(10)]
    from shipskip import ledger

    real, batches, first_in = ledger.insert_checkpoints, [], threading.Event()

    def slowed(con, batch):
        batches.append(len(batch))
        if len(batches) == 1:
            first_in.set()
            time.sleep(0.3)
        if len(batches) in fail_calls:
            raise duckdb.IOException("disk went away")
        return real(con, batch)

    monkeypatch.setattr(ledger, "insert_checkpoints", slowed)
    raised = []

    def write(i, run):
        if i > 0:
            first_in.wait(10)  # the first holds the store; the rest queue behind it
        try:
            store.checkpoint(run, five()[0])
        except duckdb.IOException:
            raised.append(run.slug)

    threads = [threading.Thread(target=write, args=(i, run)) for i, run in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return batches, raised


@pytest.mark.slow
def test_checkpoints_waiting_at_once_are_written_together(file_store, monkeypatch):
    batches, raised = _racing_checkpoints(file_store, monkeypatch)
    assert not raised
    stored = file_store.query("SELECT r.slug FROM take_checkpoints c JOIN runs r USING (run_id)")
    assert sorted(r["slug"] for r in stored) == sorted(f"t-{i}" for i in range(10))
    # Nine waited behind the first write and went in far fewer transactions than nine.
    assert batches[0] == 1 and len(batches) <= 3 and max(batches) >= 5, batches


@pytest.mark.slow
def test_a_failed_checkpoint_write_costs_its_writer_and_the_others_write_their_own(file_store, monkeypatch):
    # The second write (the queued nine together) fails: its writer raises; the other eight
    # takes it held go back to their own threads, which store them.
    batches, raised = _racing_checkpoints(file_store, monkeypatch, fail_calls=(2,))
    assert len(raised) == 1 and batches[1] >= 5, (raised, batches)
    stored = {
        r["slug"]
        for r in file_store.query("SELECT r.slug FROM take_checkpoints c JOIN runs r USING (run_id)")
    }
    assert stored == {f"t-{i}" for i in range(10)} - set(raised)
    assert file_store.ledger._queue == []  # nothing left to be written behind a caller's back


@pytest.mark.slow
def test_threads_of_one_process_hand_the_open_file_on_instead_of_reopening_it(file_store, monkeypatch):
    """Group commit: writes queued behind one another share one open of the file (14 ms
    each), and every write still lands."""
    import threading

    file_store.init()
    from shipskip.store_file import FileBackend

    real, opens = FileBackend._open_file, []

    def counted(self, read_only):
        opens.append(read_only)
        return real(self, read_only)

    monkeypatch.setattr(FileBackend, "_open_file", counted)
    runs = [file_store.begin_run(make_card(slug=f"t-{i}", name=f"T {i}")) for i in range(8)]
    opens.clear()
    barrier = threading.Barrier(8)

    def write(run):
        barrier.wait()
        for _ in range(3):
            for take in five():
                file_store.checkpoint(run, take)

    threads = [threading.Thread(target=write, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writes = 8 * 3 * 5
    assert file_store.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 8 * 5  # one a seat
    assert len(opens) < writes / 4, f"{len(opens)} opens for {writes} writes"
    # Nothing stays open once no thread waits: another process can open the file now.
    from shipskip import store_file

    assert store_file._HANDOVER.con is None


def test_a_batch_of_marks_settles_each_item_as_one_at_a_time_would(store):
    # `add_marks` reads and writes a batch in a few statements; its answers must be those of
    # the items taken in order, a reader's second item in the batch seeing the first.
    card = make_card()
    store.commit_review(store.begin_run(card), card, five())
    store.add_vote(card.slug, "skip", "bo")
    batch = [
        ("vote", card.slug, "ship", "ana"),
        ("vote", card.slug, "ship", "ana"),
        ("vote", card.slug, "skip", "ana"),
        ("vote", "no-such-tool", "ship", "ana"),
        ("vote", card.slug, "skip", "bo"),
        ("vote", card.slug, "ship", "bo"),
        ("helpful", card.slug, "builder", "ana"),
        ("helpful", card.slug, "builder", "ana"),
        ("helpful", card.slug, "founder", "ana"),  # the founder abstained: no take to mark
        ("helpful", "no-such-tool", "builder", "ana"),
    ]
    assert store.add_marks(batch) == [
        "recorded", "unchanged", "changed", "unknown", "unchanged", "changed",
        "recorded", "unchanged", "unknown", "unknown",
    ]  # fmt: skip
    votes = store.query("SELECT voter, vote FROM votes ORDER BY voter")
    assert [(r["voter"], r["vote"]) for r in votes] == [("ana", "skip"), ("bo", "ship")]
    marks = store.query("SELECT slug, persona, voter FROM helpful_marks")
    assert [(r["slug"], r["persona"], r["voter"]) for r in marks] == [(card.slug, "builder", "ana")]
    assert store.add_marks([("vote", card.slug, "ship", "ana")]) == ["changed"]
    assert store.add_marks([]) == []
