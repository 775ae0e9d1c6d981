"""The run ledger: a review's (or a rerun's) life in the store, from taking the tool's lease
to committing its takes. `Store.begin_review` hands back one `ReviewRun`, which the use case asks to
checkpoint each take and then to commit, abandon or release; `Run` is its plain value (ids,
safe to pass to a task). Every statement of a run is here, and only here."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict

import duckdb

from . import backends, queries
from .backends import OWNER, Backend, again_on_conflict, alive
from .errors import ShipskipError, ToolBusy
from .models import PanelVerdict, Take, ToolCard, is_web_address, verdict_for
from .panel import aggregate

# Columns of `tools` that are not text, for the row a review merges in.
TOOL_TYPES = {"launched": "DATE", "updated_at": "TIMESTAMP"}


class RunOptions(TypedDict, total=False):
    """`Ledger.begin_run`'s options, for the façade that passes them on."""

    kind: str
    rerun_reason: str | None
    flow_run_id: str | None
    unless_reviewed: bool


@dataclass(frozen=True)
class Run:
    run_id: str
    slug: str
    content_hash: str
    kind: str
    resumed: bool = False


@dataclass(eq=False)  # queued items are told apart by identity
class _Queued:
    """A checkpoint waiting for its turn to be written (`Ledger.checkpoint`)."""

    run: Run
    take: Take
    done: bool = False


class ReviewRun:
    """One running review or rerun, held by the use case from claim to commit or abandon."""

    def __init__(self, ledger: Ledger, run: Run) -> None:
        self.ledger, self.run = ledger, run

    @property
    def resumed(self) -> bool:
        return self.run.resumed

    def checkpoint(self, take: Take) -> None:
        self.ledger.checkpoint(self.run, take)

    def checkpoints(self) -> dict[str, Take]:
        return self.ledger.checkpoints(self.run)

    def drop_checkpoints(self, personas: list[str]) -> None:
        self.ledger.drop_checkpoints(self.run, personas)

    def commit(self, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None = None) -> None:
        self.ledger.commit_review(self.run, card, takes, verdict)

    def fail(self, take: Take, rerun_reason: str | None) -> None:
        self.ledger.fail_rerun(self.run, take, rerun_reason)

    def abandon(self) -> None:
        self.ledger.abandon_run(self.run)

    def release(self) -> None:
        self.ledger.release_run(self.run)


def verdict_follows(verdict: str | None, score: int | None) -> bool:
    """A take abstains (neither) or its verdict is the one its score gives. The single file's
    CHECK says so too, but a lake holds no CHECK, so the store asks it of every take it writes."""
    if verdict is None or score is None:
        return verdict is None and score is None
    return 0 <= score <= 100 and verdict == verdict_for(score)


def identity_problem(card: ToolCard, name: str, url: str | None) -> str | None:
    """A slug names one tool for good: why a card with another tool's slug (another name, or
    another URL where both have one) is refused, never merged into that tool's history."""
    known_url = url if url and is_web_address(url) else ""
    other_name = " ".join(name.casefold().split()) != " ".join(card.name.casefold().split())
    other_url = bool(known_url and card.url and known_url.rstrip("/") != card.url.rstrip("/"))
    if not (other_name or other_url):
        return None
    what = f"'{name}'" + (f" ({known_url})" if other_url else "")
    return f"slug '{card.slug}' already belongs to {what}; give '{card.name}' its own slug"


class Grouping(Protocol):
    """Where a backend's starts and review commits are written together (`store_group`)."""

    def start(
        self,
        card: ToolCard,
        kind: str,
        rerun_reason: str | None,
        flow_run_id: str | None,
        unless_reviewed: bool,
    ) -> Run | None: ...

    def commit(self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None) -> None: ...


class Ledger:
    def __init__(self, db: Backend) -> None:
        self.db = db
        self._queue: list[_Queued] = []
        self._queue_guard = threading.Lock()
        # On a lake, runs start and reviews commit in groups (set by the store); on the file,
        # each in its own transaction, the file's writers handing their connection on.
        self.group: Grouping | None = None

    def begin_run(
        self,
        card: ToolCard,
        kind: str = "review",
        rerun_reason: str | None = None,
        flow_run_id: str | None = None,
        unless_reviewed: bool = False,
    ) -> Run | None:
        """Take the tool's lease and start a run, or pick up an unfinished one for the same content.

        Only one process writes a tool at a time: a running run held by another live process
        raises ToolBusy. A run whose holder is gone (a dead process on this machine, or no sign
        of life for `lease_s`: SHIPSKIP_LEASE_S) is taken over. With `unless_reviewed`, returns
        None when a finished review already read this content, checked under the same lock, so
        two processes that both saw the tool as new do not both review it.
        """
        self.db.claim(card.slug)
        try:
            if self.group is not None:
                run = self.group.start(card, kind, rerun_reason, flow_run_id, unless_reviewed)
            else:
                run = self._begin_run(card, kind, rerun_reason, flow_run_id, unless_reviewed)
        except BaseException:
            self.db.release(card.slug)
            raise
        if run is None:
            self.db.release(card.slug)
        return run

    @again_on_conflict
    def _begin_run(
        self,
        card: ToolCard,
        kind: str,
        rerun_reason: str | None,
        flow_run_id: str | None,
        unless_reviewed: bool,
    ) -> Run | None:
        h = card.content_hash()
        now = backends.now()
        with self.db.transaction() as con:
            known = con.execute("SELECT name, url FROM tools WHERE slug = ?", [card.slug]).fetchone()
            problem = identity_problem(card, *known) if known else None
            if problem:
                raise ShipskipError(problem)
            if (
                unless_reviewed
                and con.execute(
                    "SELECT 1 FROM runs WHERE slug = ? AND content_hash = ? AND kind = 'review'"
                    " AND status = 'complete' LIMIT 1",
                    [card.slug, h],
                ).fetchone()
            ):
                return None
            running = con.execute(
                "SELECT run_id, content_hash, kind, owner, heartbeat_at FROM runs"
                " WHERE slug = ? AND status = 'running' ORDER BY started_at DESC",
                [card.slug],
            ).fetchall()
            for *_, owner, beat in running:
                if owner and owner != OWNER and alive(owner, beat, now, self.db.lease_s):
                    raise ToolBusy(card.slug, owner, beat)
            mine = next((r for r in running if r[1] == h and r[2] == kind == "review"), None)
            if mine:
                con.execute(
                    "UPDATE runs SET owner = ?, heartbeat_at = ? WHERE run_id = ?", [OWNER, now, mine[0]]
                )
                return Run(mine[0], card.slug, h, kind, resumed=True)
            run_id = uuid.uuid4().hex
            con.execute(
                "INSERT INTO runs (run_id, slug, content_hash, kind, status, reason, flow_run_id,"
                " started_at, owner, heartbeat_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                [run_id, card.slug, h, kind, rerun_reason, flow_run_id, now, OWNER, now],
            )
        return Run(run_id, card.slug, h, kind)

    # -- checkpoints -----------------------------------------------------------------

    def checkpoint(self, run: Run, take: Take) -> None:
        """Keep one persona's take of a running run; returns once it is stored.

        Personas finish in bursts (a whole ingest's personas share the provider), so takes that wait
        for the store at the same moment are written together: each is queued, and whichever
        thread gets the store first writes everything queued, in one transaction. A thread
        whose take another wrote returns at once; a write that fails puts the others' takes
        back for their own threads to write, so a failure costs its own take only."""
        if self.db.put_checkpoints([(run.run_id, run.slug, take.persona, take.model_dump_json())]):
            return  # kept beside the leases, in one statement: nothing to batch
        mine = _Queued(run, take)
        with self._queue_guard:
            self._queue.append(mine)
        try:
            self._write_queued(mine)
        except BaseException:
            with self._queue_guard:  # never written later behind its caller's back
                if mine in self._queue:
                    self._queue.remove(mine)
            raise

    @again_on_conflict
    def _write_queued(self, mine: _Queued) -> None:
        with self.db.transaction() as con:
            with self._queue_guard:
                if mine.done:
                    return
                batch, self._queue = self._queue, []
            if mine not in batch:  # run again after a conflict: it was put back, or is written again
                batch.append(mine)
            try:
                insert_checkpoints(con, batch)
            except BaseException:
                with self._queue_guard:
                    self._queue[:0] = [q for q in batch if q is not mine]
                raise
        for q in batch:
            # Marked once committed. A thread that gets the store before this line writes its
            # take again: a checkpoint is replaced whole, so that costs time, not correctness.
            q.done = True
        self.db.beat(sorted({q.run.slug for q in batch}))

    def checkpoints(self, run: Run) -> dict[str, Take]:
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT persona, payload FROM take_checkpoints WHERE run_id = ?", [run.run_id]
            ).fetchall()
        # Those the backend keeps beside its leases come last: they are the newer ones.
        rows += self.db.checkpoints(run.run_id)
        return {p: Take.model_validate_json(payload) for p, payload in rows}

    @again_on_conflict
    def drop_checkpoints(self, run: Run, personas: list[str]) -> None:
        """Forget some personas' checkpoints of a running run, so the next run asks them again."""
        if not personas:
            return
        with self.db.transaction() as con:
            con.execute(
                "DELETE FROM take_checkpoints WHERE run_id = ? AND persona IN (SELECT unnest(?))",
                [run.run_id, personas],
            )
        self.db.forget_checkpoints(run.run_id, personas)

    # -- the end of a run ------------------------------------------------------------

    @again_on_conflict
    def release_run(self, run: Run) -> None:
        """Give up a running run's lease (its checkpoints stay), so the next run resumes it at once."""
        with self.db.transaction() as con:
            con.execute("UPDATE runs SET owner = NULL WHERE run_id = ? AND status = 'running'", [run.run_id])
        self.db.release(run.slug)

    @again_on_conflict
    def abandon_run(self, run: Run) -> None:
        """Forget a run that produced nothing worth keeping (its checkpoints go with it)."""
        with self.db.transaction() as con:
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])
            con.execute("DELETE FROM runs WHERE run_id = ? AND status = 'running'", [run.run_id])
        self.db.forget_checkpoints(run.run_id)
        self.db.release(run.slug)

    @again_on_conflict
    def fail_rerun(self, run: Run, take: Take, rerun_reason: str | None) -> None:
        """Record a rerun whose persona failed, and end its run; the current take is untouched."""
        now = backends.now()
        row = {
            "run_id": run.run_id, "slug": run.slug, "persona": take.persona, "reason": rerun_reason,
            "error": take.error or "no take", "model": take.model, "prompt_version": take.prompt_version,
            "prompt_hash": take.prompt_hash, "attempts": take.attempts,
            "prompt_tokens": take.usage.prompt_tokens, "completion_tokens": take.usage.completion_tokens,
            "created_at": now,
        }  # fmt: skip
        with self.db.transaction() as con:
            started = con.execute("SELECT started_at FROM runs WHERE run_id = ?", [run.run_id]).fetchone()
            row["started_at"] = started[0] if started else now
            cols = ", ".join(row)
            con.execute(
                f"INSERT INTO failed_reruns ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])
            con.execute("DELETE FROM runs WHERE run_id = ? AND status = 'running'", [run.run_id])
        self.db.forget_checkpoints(run.run_id)
        self.db.release(run.slug)

    def commit_review(
        self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None = None
    ) -> None:
        """Tool, takes and run status land together or not at all. A review passes the panel's
        `verdict` it worked out; a rerun's is the whole panel's after it, read here. On a lake a
        review commits in a group with the process's other finished reviews."""
        if self.group is not None and run.kind == "review":
            self.group.commit(run, card, takes, verdict)  # then forgets and releases its group's
            return
        self._commit_review(run, card, takes, verdict)
        # After the commit: a kill in between leaves checkpoints of a complete run, which no
        # run resumes; before it, it could lose a running run's takes.
        self.db.forget_checkpoints(run.run_id)
        self.db.release(run.slug)

    @again_on_conflict
    def _commit_review(
        self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None
    ) -> None:
        verdict_takes = takes
        now = backends.now()
        personas = [t.persona for t in takes]
        # A handful of statements for the whole panel, not a few per persona: on a lake each
        # statement is a round trip to the catalog.
        with self.db.transaction() as con:
            upsert_tool(con, card, now)
            # Each persona's latest take: the new one's version follows it, and it keeps what it
            # replaces (the `take_changes` view reads that instead of joining every take).
            cur = con.execute(
                "SELECT persona, version, score, verdict, model, prompt_version FROM takes"
                " WHERE slug = ? AND persona IN (SELECT unnest(?)) ORDER BY version",
                [card.slug, personas],
            )
            cols = [d[0] for d in cur.description or []]
            rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            latest = {r["persona"]: r for r in rows}  # in version order: the last one wins
            # The new takes become their personas' current ones in the same transaction.
            con.execute(
                "UPDATE takes SET is_current = false"
                " WHERE slug = ? AND is_current AND persona IN (SELECT unnest(?))",
                [card.slug, personas],
            )
            insert_takes(con, run, [(t, latest.get(t.persona, {})) for t in takes], now)
            # A rerun changes one persona; the verdict it records is the whole panel's after it.
            if run.kind == "rerun":
                verdict_takes = queries.current(con, card.slug)
            v = verdict if verdict is not None and run.kind != "rerun" else aggregate(verdict_takes)
            con.execute(
                "UPDATE runs SET status = 'complete', finished_at = ?, label = ?, ship = ?, skip = ?,"
                " abstain = ?, ship_pct = ? WHERE run_id = ?",
                [now, v.label, v.ship, v.skip, v.abstain, v.ship_pct, run.run_id],
            )
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])


def insert_checkpoints(con: duckdb.DuckDBPyConnection, batch: list[_Queued]) -> None:
    now = backends.now()
    # The last take queued for a persona wins, as when each was written in turn.
    latest = list({(q.run.run_id, q.take.persona): q for q in batch}.values())
    keys = [v for q in latest for v in (q.run.run_id, q.take.persona)]
    pairs = ", ".join(["(?, ?)"] * len(latest))
    con.execute(f"DELETE FROM take_checkpoints WHERE (run_id, persona) IN ({pairs})", keys)
    con.execute(
        "INSERT INTO take_checkpoints (run_id, persona, payload, created_at) VALUES "
        + ", ".join(["(?, ?, ?, ?)"] * len(latest)),
        [v for q in latest for v in (q.run.run_id, q.take.persona, q.take.model_dump_json(), now)],
    )
    runs = sorted({q.run.run_id for q in latest})
    marks = ", ".join("?" * len(runs))
    con.execute(f"UPDATE runs SET heartbeat_at = ? WHERE run_id IN ({marks})", [now, *runs])


def tool_row(card: ToolCard, now: datetime) -> dict[str, Any]:
    """A card's row of `tools` (its first sighting aside)."""
    return {
        "slug": card.slug, "name": card.name, "tagline": card.tagline, "category": card.category,
        "pricing": card.pricing, "entry_tier": card.entry_tier, "description": card.description,
        "source": card.source, "url": card.url, "launched": card.launched,
        "content_hash": card.content_hash(), "updated_at": now,
    }  # fmt: skip


def upsert_tool(con: duckdb.DuckDBPyConnection, card: ToolCard, now: datetime) -> None:
    # MERGE and NOT EXISTS rather than ON CONFLICT: a lake has no keys to conflict on.
    row = tool_row(card, now)
    h = row["content_hash"]
    fields = ", ".join(f"CAST(? AS {TOOL_TYPES.get(c, 'VARCHAR')}) AS {c}" for c in row)
    con.execute(
        f"MERGE INTO tools USING (SELECT {fields}) AS new ON tools.slug = new.slug"
        f" WHEN MATCHED THEN UPDATE SET {', '.join(f'{c} = new.{c}' for c in row if c != 'slug')}"
        f" WHEN NOT MATCHED THEN INSERT ({', '.join(row)}, first_seen)"
        f" VALUES ({', '.join(f'new.{c}' for c in row)}, new.updated_at)",
        list(row.values()),
    )
    con.execute(
        "INSERT INTO tool_versions (slug, content_hash, card, created_at) SELECT ?, ?, ?, ?"
        " WHERE NOT EXISTS (SELECT 1 FROM tool_versions WHERE slug = ? AND content_hash = ?)",
        [card.slug, h, card.model_dump_json(), now, card.slug, h],
    )


def insert_takes(
    con: duckdb.DuckDBPyConnection, run: Run, takes: list[tuple[Take, dict[str, Any]]], now: datetime
) -> None:
    """One INSERT for the takes of a run, each after the take it replaces (empty: its first)."""
    insert_rows(con, take_rows(run, takes, now))


def take_rows(run: Run, takes: list[tuple[Take, dict[str, Any]]], now: datetime) -> list[dict[str, Any]]:
    """A run's takes as rows of `takes`; a take whose verdict its score does not give is refused."""
    for t, _ in takes:
        if not verdict_follows(t.verdict, t.score):
            raise ShipskipError(
                f"{run.slug}: {t.persona}: verdict '{t.verdict}' does not follow score {t.score}"
            )
    rows = [
        {
            "take_id": uuid.uuid4().hex, "run_id": run.run_id, "slug": run.slug,
            "content_hash": run.content_hash, "version": prev.get("version", 0) + 1,
            "prev_score": prev.get("score"), "prev_verdict": prev.get("verdict"),
            "prev_model": prev.get("model"), "prev_prompt_version": prev.get("prompt_version"),
            "created_at": now,
            "prompt_tokens": t.usage.prompt_tokens, "completion_tokens": t.usage.completion_tokens,
            "cached_tokens": t.usage.cached_tokens, "is_current": True,
            "batch_prompt_tokens": t.usage.batch_prompt_tokens,
            "batch_completion_tokens": t.usage.batch_completion_tokens,
            "criteria": json.dumps([c.model_dump() for c in t.criteria]) if t.criteria else None,
            **t.model_dump(include=queries.TAKE_FIELDS, by_alias=True),
        }
        for t, prev in takes
    ]  # fmt: skip
    return rows


def insert_rows(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    marks = ", ".join(f"({', '.join('?' * len(cols))})" for _ in rows)
    con.execute(f"INSERT INTO takes ({', '.join(cols)}) VALUES {marks}", [r[c] for r in rows for c in cols])
