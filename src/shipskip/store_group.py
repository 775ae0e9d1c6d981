"""Group commit on a lake: several tools' run starts and review commits in one DuckLake
transaction.

On a lake every transaction that writes is a DuckLake commit, a dozen round trips to the
PostgreSQL catalog whatever it holds, and a process's threads take turns on the store. With
one transaction per start and one per commit, an ingest's tools queued behind each other's
commits and the provider sat idle (15 requests/s of 80). Here each thread queues its start or
commit and waits; whichever thread gets the turn writes everything queued in one transaction,
a few statements for the whole group, and the others find theirs done.

The guarantees are the ledger's own:
- a start or commit counts only once its group's transaction commits; until then the tool's
  lease and its checkpoints (in PostgreSQL) stand, so a SIGKILL leaves it resumable;
- one tool's failure costs that tool only: a busy tool or a card whose slug belongs to another
  tool is an answer for that one start, and a group whose transaction fails is written again
  one by one, each alone as the ledger writes it, so only the bad one fails;
- a transaction that loses a conflict with another machine's is run again whole.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from . import backends, ledger
from .backends import OWNER, again_on_conflict, alive
from .errors import ShipskipError, ToolBusy
from .ledger import Ledger, Run
from .models import PanelVerdict, Take, ToolCard
from .panel import aggregate


@dataclass(frozen=True)
class _Start:
    card: ToolCard
    kind: str
    rerun_reason: str | None
    flow_run_id: str | None
    unless_reviewed: bool


@dataclass(frozen=True)
class _Commit:
    run: Run
    card: ToolCard
    takes: list[Take]
    verdict: PanelVerdict | None


@dataclass(eq=False)  # told apart by identity
class _Pending:
    """One thread's start or commit, waiting for its group."""

    slug: str
    what: _Start | _Commit
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class RunGroup:
    """The queue of one process's starts and commits on a lake (see the module's doc)."""

    def __init__(self, owner: Ledger) -> None:
        self.ledger = owner
        self.db = owner.db
        self._queue: list[_Pending] = []
        self._guard = threading.Lock()  # the queue
        self._turn = threading.Lock()  # one group written at a time

    def start(
        self,
        card: ToolCard,
        kind: str,
        rerun_reason: str | None,
        flow_run_id: str | None,
        unless_reviewed: bool,
    ) -> Run | None:
        """`Ledger._begin_run`, in the next group: the tool's lease is already taken."""
        result = self._wait(
            _Pending(card.slug, _Start(card, kind, rerun_reason, flow_run_id, unless_reviewed))
        )
        return result if isinstance(result, Run) else None

    def commit(self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None) -> None:
        """`Ledger.commit_review` for a review, in the next group: its transaction, then its
        checkpoints forgotten and its lease given up."""
        self._wait(_Pending(run.slug, _Commit(run, card, takes, verdict)))

    def _wait(self, mine: _Pending) -> Any:
        with self._guard:
            self._queue.append(mine)
        try:
            while not mine.done:
                with self._turn:
                    if mine.done:  # written by the thread that had the turn
                        break
                    with self._guard:
                        batch, self._queue = self._queue, []
                    self._write(batch, mine)
        except BaseException:
            with self._guard:  # its caller is gone (Ctrl-C): never written behind its back
                if mine in self._queue:
                    self._queue.remove(mine)
            raise
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _write(self, batch: list[_Pending], mine: _Pending) -> None:
        # A slug once a group: a second item for it (two threads of this process on one card)
        # waits for the next group, so it sees what the first wrote.
        seen: set[str] = set()
        group: list[_Pending] = []
        later: list[_Pending] = []
        for item in batch:
            (later if item.slug in seen else group).append(item)
            seen.add(item.slug)
        with self._guard:
            self._queue[:0] = later
        try:
            outcomes = self._outcomes(group)
        except BaseException:
            # Stopped midway (Ctrl-C): the others' items go back for their own threads.
            with self._guard:
                self._queue[:0] = [item for item in group if item is not mine]
            raise
        finished = [
            (item.what.run.run_id, item.slug)
            for item, (_, error) in zip(group, outcomes, strict=True)
            if error is None and isinstance(item.what, _Commit)
        ]
        if finished:
            # After the commit, as the ledger does: a kill in between leaves checkpoints of a
            # complete run, which no run resumes, and leases the sweep drops.
            try:
                self.db.finish(finished)
            except Exception as exc:  # committed, but its caller hears of it, as alone
                outcomes = [
                    (result, exc if isinstance(item.what, _Commit) and error is None else error)
                    for item, (result, error) in zip(group, outcomes, strict=True)
                ]
        for item, (result, error) in zip(group, outcomes, strict=True):
            item.result, item.error, item.done = result, error, True

    def _outcomes(self, group: list[_Pending]) -> list[tuple[Any, BaseException | None]]:
        if len(group) == 1:  # alone: the ledger's own transaction, as on the file
            return [self._alone(group[0])]
        try:
            return self._together(group)
        except Exception:
            pass
        # One bad item must not sink the others: each is written alone, as the ledger would.
        return [self._alone(item) for item in group]

    def _alone(self, item: _Pending) -> tuple[Any, BaseException | None]:
        what = item.what
        try:
            if isinstance(what, _Start):
                return self.ledger._begin_run(
                    what.card, what.kind, what.rerun_reason, what.flow_run_id, what.unless_reviewed
                ), None
            self.ledger._commit_review(what.run, what.card, what.takes, what.verdict)
            return None, None
        except Exception as exc:
            return None, exc

    @again_on_conflict
    def _together(self, group: list[_Pending]) -> list[tuple[Any, BaseException | None]]:
        now = backends.now()
        commits = [item.what for item in group if isinstance(item.what, _Commit)]
        starts = [item.what for item in group if isinstance(item.what, _Start)]
        with self.db.transaction() as con:
            if commits:
                commit_reviews(con, commits, now)
            started = iter(start_runs(con, starts, now, self.db.lease_s) if starts else [])
        return [next(started) if isinstance(item.what, _Start) else (None, None) for item in group]


def start_runs(
    con: duckdb.DuckDBPyConnection, starts: list[_Start], now: datetime, lease_s: float
) -> list[tuple[Run | None, BaseException | None]]:
    """`Ledger._begin_run` for several tools (one each), each answered on its own: its run, None
    (this content is reviewed), or the error it would have raised (busy, another tool's slug).
    Two reads and at most two writes, whatever the number of tools."""
    slugs = [s.card.slug for s in starts]
    known = {
        slug: (name, url)
        for slug, name, url in con.execute(
            "SELECT slug, name, url FROM tools WHERE slug IN (SELECT unnest(?))", [slugs]
        ).fetchall()
    }
    # The runs that matter, in one read: finished reviews (of each content), running runs.
    reviewed: set[tuple[str, str]] = set()
    running: dict[str, list[tuple[Any, ...]]] = {}
    for slug, status, *row in con.execute(
        "SELECT slug, status, run_id, content_hash, kind, owner, heartbeat_at FROM runs"
        " WHERE slug IN (SELECT unnest(?)) AND (status = 'running' OR kind = 'review')"
        " ORDER BY started_at DESC",
        [slugs],
    ).fetchall():
        if status == "running":
            running.setdefault(slug, []).append(tuple(row))
        else:
            reviewed.add((slug, row[1]))
    out: list[tuple[Run | None, BaseException | None]] = []
    resumed: list[str] = []
    new: list[list[Any]] = []
    for s in starts:
        slug, h = s.card.slug, s.card.content_hash()
        problem = ledger.identity_problem(s.card, *known[slug]) if slug in known else None
        if problem:
            out.append((None, ShipskipError(problem)))
            continue
        if s.unless_reviewed and (slug, h) in reviewed:
            out.append((None, None))
            continue
        rows = running.get(slug, [])
        busy = next(
            (
                (owner, beat)
                for *_, owner, beat in rows
                if owner and owner != OWNER and alive(owner, beat, now, lease_s)
            ),
            None,
        )
        if busy:
            out.append((None, ToolBusy(slug, *busy)))
            continue
        mine = next((r for r in rows if r[1] == h and r[2] == s.kind == "review"), None)
        if mine:
            resumed.append(mine[0])
            out.append((Run(mine[0], slug, h, s.kind, resumed=True), None))
            continue
        run_id = uuid.uuid4().hex
        new.append([run_id, slug, h, s.kind, s.rerun_reason, s.flow_run_id, now, OWNER, now])
        out.append((Run(run_id, slug, h, s.kind), None))
    if resumed:
        con.execute(
            "UPDATE runs SET owner = ?, heartbeat_at = ? WHERE run_id IN (SELECT unnest(?))",
            [OWNER, now, resumed],
        )
    if new:
        con.execute(
            "INSERT INTO runs (run_id, slug, content_hash, kind, status, reason, flow_run_id, started_at,"
            " owner, heartbeat_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)"] * len(new)),
            [v for row in new for v in row],
        )
    return out


def commit_reviews(con: duckdb.DuckDBPyConnection, commits: list[_Commit], now: datetime) -> None:
    """`Ledger._commit_review` for several reviews (one per tool), in the statements one
    review takes: the tools and their versions, the personas' latest takes, the current flags,
    the new takes, the runs' status and the lake's old checkpoints, one statement each (on a
    lake each costs 15-40 ms of catalog round trips, whatever its rows)."""
    upsert_tools(con, [c.card for c in commits], now)
    slugs = [c.card.slug for c in commits]
    cur = con.execute(
        "SELECT slug, persona, version, score, verdict, model, prompt_version FROM takes"
        " WHERE slug IN (SELECT unnest(?)) ORDER BY version",
        [slugs],
    )
    cols = [d[0] for d in cur.description or []]
    latest = {(row[0], row[1]): dict(zip(cols, row, strict=True)) for row in cur.fetchall()}
    # The new takes become their personas' current ones; a tool's first review has none to replace.
    pairs = [(c.card.slug, t.persona) for c in commits for t in c.takes if (c.card.slug, t.persona) in latest]
    if pairs:
        con.execute(
            "UPDATE takes SET is_current = false WHERE is_current AND (slug, persona) IN ("
            + ", ".join(["(?, ?)"] * len(pairs))
            + ")",
            [v for pair in pairs for v in pair],
        )
    rows = [
        row
        for c in commits
        for row in ledger.take_rows(
            c.run, [(t, latest.get((c.card.slug, t.persona), {})) for t in c.takes], now
        )
    ]
    ledger.insert_rows(con, rows)
    finished = []
    for c in commits:
        v = c.verdict if c.verdict is not None else aggregate(c.takes)
        finished.append([c.run.run_id, now, v.label, v.ship, v.skip, v.abstain, v.ship_pct])
    con.execute(
        "UPDATE runs SET status = 'complete', finished_at = v.finished_at, label = v.label, ship = v.ship,"
        " skip = v.skip, abstain = v.abstain, ship_pct = v.ship_pct FROM (VALUES "
        + ", ".join(["(?, CAST(? AS TIMESTAMP), ?, CAST(? AS INTEGER), CAST(? AS INTEGER),"
                     " CAST(? AS INTEGER), CAST(? AS INTEGER))"] * len(finished))
        + ") AS v(run_id, finished_at, label, ship, skip, abstain, ship_pct) WHERE runs.run_id = v.run_id",
        [x for row in finished for x in row],
    )  # fmt: skip
    # A lake keeps its checkpoints in PostgreSQL; only a resumed run can have rows an older
    # version left in the lake's own table.
    resumed = [c.run.run_id for c in commits if c.run.resumed]
    if resumed:
        con.execute("DELETE FROM take_checkpoints WHERE run_id IN (SELECT unnest(?))", [resumed])


def upsert_tools(con: duckdb.DuckDBPyConnection, cards: list[ToolCard], now: datetime) -> None:
    """`ledger.upsert_tool` for several cards (one per slug) in two statements."""
    rows = [ledger.tool_row(card, now) for card in cards]
    cols = list(rows[0])
    cell = "(" + ", ".join(f"CAST(? AS {ledger.TOOL_TYPES.get(c, 'VARCHAR')})" for c in cols) + ")"
    con.execute(
        f"MERGE INTO tools USING (SELECT * FROM (VALUES {', '.join([cell] * len(rows))})"
        f" AS new({', '.join(cols)})) AS new ON tools.slug = new.slug"
        f" WHEN MATCHED THEN UPDATE SET {', '.join(f'{c} = new.{c}' for c in cols if c != 'slug')}"
        f" WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}, first_seen)"
        f" VALUES ({', '.join(f'new.{c}' for c in cols)}, new.updated_at)",
        [r[c] for r in rows for c in cols],
    )
    versions = [[card.slug, card.content_hash(), card.model_dump_json(), now] for card in cards]
    con.execute(
        "INSERT INTO tool_versions (slug, content_hash, card, created_at) SELECT * FROM (VALUES "
        + ", ".join(["(?, ?, ?, CAST(? AS TIMESTAMP))"] * len(versions))
        + ") AS v(slug, content_hash, card, created_at) WHERE NOT EXISTS (SELECT 1 FROM tool_versions t"
        " WHERE t.slug = v.slug AND t.content_hash = v.content_hash)",
        [x for row in versions for x in row],
    )
