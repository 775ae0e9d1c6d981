"""DuckDB storage: numbered migrations, append-only takes, one transaction per review.

Two backends behind one class, chosen by SHIPSKIP_CATALOG: the single DuckDB file (the
default), or a DuckLake with a PostgreSQL catalog that many machines share (`store_lake`).

File connections are short-lived on purpose: DuckDB lets one process write a file at a time,
so a review holds the file only while it writes, and readers in other processes get in
between, after a short retried wait. A lake has no such lock: its writers commit optimistically,
a conflicting commit is retried whole, and a tool's lease in PostgreSQL says who may write it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic import ValidationError
from tenacity import Retrying, retry, retry_if_exception, stop_after_delay, wait_random_exponential

from .errors import (
    QueryTimeout,
    ShipskipError,
    StoredRowError,
    ToolBusy,
    UnknownTool,
    describe_validation_error,
)
from .models import (
    SHIP_THRESHOLD,
    CommunityVotes,
    EditorLabel,
    PanelVerdict,
    Take,
    ToolCard,
    Usage,
    is_web_address,
    verdict_for,
)
from .panel import aggregate
from .roster import seat_key
from .store_lake import ALIAS, Lake

if TYPE_CHECKING:
    from .settings import Settings


@functools.cache
def _no_pandas_search() -> None:
    """DuckDB's Python binding tries `import pandas` for every parameter it binds. Where pandas
    is not installed, each failed try searches sys.path again: 0.1 ms a value, about 15 ms a
    review's commit, and a fifth of an ingest's time (py-spy). An empty entry in sys.modules
    makes the same import fail at once, with the same ModuleNotFoundError. Done when the first
    store is made rather than at import, so importing shipskip changes nothing."""
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None  # type: ignore[assignment]


# DuckDB refuses a read-only and a read-write connection to one file in the same process,
# so every connection in this process takes turns; each is held only for one short step.
_LOCK = threading.RLock()


class _Handover:
    """Group commit for the file. Opening it costs 14 ms, a write on an open connection about
    one: so a writer that finishes while other threads of this process queue for the file
    hands them its open connection instead of closing it. Once no one here is waiting, or after
    `hold_s` (SHIPSKIP_STORE_HOLD_S), it is closed, and other processes (an analyst, another
    worker) get their turn."""

    # After closing on hold_s with threads still queued, the file stays closed this long, so
    # another process's retry can find it free.
    GAP_S = 0.05

    def __init__(self) -> None:
        self.queued = 0
        self.guard = threading.Lock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.path = ""
        self.opened = 0.0
        self.depth = 0
        self.hold_s = 1.0


_HANDOVER = _Handover()
# Tables an export writes and an import may load (views are exported by analytics).
EXPORT_TABLES = ("tools", "tool_versions", "runs", "takes", "failed_reruns", "votes", "model_prices")
_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Analysts' snapshots of the file sit beside it while they are read: .shipskip-snapshot-PID-xxxx/
_SNAPSHOT_PREFIX = ".shipskip-snapshot-"
_SNAPSHOT_RE = re.compile(r"^\.shipskip-snapshot-(\d+)-")


# Who holds a run: this process on this machine.
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str, heartbeat: datetime | None, now: datetime, lease_s: float = 900.0) -> bool:
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and (now - heartbeat).total_seconds() < lease_s


def _sweep_snapshots(folder: Path) -> None:
    """Remove analysts' snapshots left by processes that died before removing their own."""
    for entry in folder.glob(f"{_SNAPSHOT_PREFIX}*"):
        m = _SNAPSHOT_RE.match(entry.name)
        if m and not _alive(f"{socket.gethostname()}:{m.group(1)}", None, _now()):
            shutil.rmtree(entry, ignore_errors=True)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """A count(*) query's one value (a count always has one row)."""
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _is_write_conflict(exc: BaseException) -> bool:
    # A lake's writers commit optimistically: one that loses to another's commit is rolled
    # back, whether DuckLake notices (a conflict) or its PostgreSQL catalog does.
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        (isinstance(exc, duckdb.TransactionException) and "conflict" in text)
        or "could not serialize access" in text
    )


# Each writing method is one transaction, so one that lost a conflict is simply run again.
_again_on_conflict = retry(
    retry=retry_if_exception(_is_write_conflict),
    wait=wait_random_exponential(multiplier=0.05, max=2.0),
    stop=stop_after_delay(120),
    reraise=True,
)


def migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("shipskip.migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


@dataclass(eq=False)  # queued items are told apart by identity
class _Queued:
    """A checkpoint waiting for its turn to be written (`Store.checkpoint`)."""

    run: Run
    take: Take
    done: bool = False


@dataclass(frozen=True)
class Run:
    run_id: str
    slug: str
    content_hash: str
    kind: str
    resumed: bool = False


def _verdict_follows(verdict: str | None, score: int | None) -> bool:
    """A take abstains (neither) or its verdict is the one its score gives. The single file's
    CHECK says so too, but a lake holds no CHECK, so the store asks it of every take it writes."""
    if verdict is None or score is None:
        return verdict is None and score is None
    return 0 <= score <= 100 and verdict == verdict_for(score)


class Store:
    def __init__(
        self,
        path: Path | str,
        lock_wait_s: float = 30.0,
        lake: Lake | None = None,
        query_timeout_s: float | None = None,
        lease_s: float = 900.0,
    ) -> None:
        _no_pandas_search()
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s
        self.lake = lake
        # Analysts' queries (`sandbox`, `analysing`) are interrupted after this long; None: never.
        self.query_timeout_s = query_timeout_s
        # A run whose holder shows no sign of life for this long is taken to be abandoned.
        self.lease_s = lease_s
        self._lake_con: duckdb.DuckDBPyConnection | None = None
        self._lake_reader_con: duckdb.DuckDBPyConnection | None = None
        self._migrated = False
        # A thread's read connection while it reads several things in a row (`reading`).
        self._pinned = threading.local()
        self._queue: list[_Queued] = []
        self._queue_guard = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, path: Path | str | None = None) -> Store:
        """The store the settings name: a DuckLake when SHIPSKIP_CATALOG is set, else the file."""
        _HANDOVER.hold_s = settings.store_hold_s  # one file handover per process, as the settings
        lake = None
        if settings.catalog is not None:
            lake = Lake(settings.catalog.get_secret_value(), settings.lake_data_path)
        timeout_s, lease_s = settings.query_timeout_s, settings.lease_s
        return cls(path or settings.db_path, lake=lake, query_timeout_s=timeout_s, lease_s=lease_s)

    def _holder_alive(self, owner: str, heartbeat: datetime | None) -> bool:
        return _alive(owner, heartbeat, _now(), self.lease_s)

    def exists(self) -> bool:
        """Whether anything was stored yet (a lake is made on first use, readers included)."""
        return self.lake is not None or self.path.exists()

    def describe(self) -> str:
        return self.lake.describe() if self.lake else str(self.path)

    # -- connections -----------------------------------------------------------------

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(_is_lock_conflict),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            stop=stop_after_delay(self.lock_wait_s),
            reraise=True,
        )

    @contextmanager
    def reading(self) -> Iterator[None]:
        """This thread's reads in the block share one read connection: a page or an artifact
        reads four or five things, and opening the file for each cost 14 ms."""
        if getattr(self._pinned, "con", None) is not None:
            yield
            return
        with self.connect(read_only=True) as con:
            self._pinned.con = con
            try:
                yield
            finally:
                self._pinned.con = None

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        pinned = getattr(self._pinned, "con", None)
        if pinned is not None:
            if not read_only:
                raise RuntimeError("a write inside Store.reading()")
            yield pinned
            return
        if self.lake is not None:
            with _LOCK:
                con = (self._lake_reader() if read_only else self._lake_base()).cursor()
                try:
                    con.execute(f"USE {ALIAS}")
                    yield con
                finally:
                    con.close()
            return
        if read_only:
            self._ready_to_read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._shared(read_only) as con:
            yield con

    @contextmanager
    def _read_only_file(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # The caller holds _LOCK.
        self._close_handover()  # a read-only connection cannot share the instance
        con = self._open_file(read_only=True)
        try:
            yield con
        finally:
            con.close()

    def _ready_to_read(self) -> None:
        if not self.path.exists():
            raise ShipskipError(f"{self.path}: no database yet; review a tool first")
        if not self._migrated:
            self._catch_up()

    def _open_file(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            for attempt in self._retrying():
                with attempt:
                    con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            # DuckDB's message names the process holding the file; pass it on in one line.
            holder = re.search(r"PID (\d+)", str(exc))
            who = f"process {holder.group(1)}" if holder else "another process"
            raise ShipskipError(
                f"{self.path}: {who} held the database for over {self.lock_wait_s:.0f} s; try again"
            ) from None
        if not read_only and not self._migrated:
            try:
                self._migrate(con)
            except BaseException:
                con.close()
                raise
        return con

    @contextmanager
    def _shared(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file, in turn with this process's other threads. A read while the handover is
        open reads through it (the store's own queries; an analyst's typed SQL never comes
        here); otherwise a read opens the file read-only, and a write opens it for writing."""
        h = _HANDOVER
        mine = str(self.path.resolve())
        with h.guard:
            h.queued += 1
        with _LOCK:
            with h.guard:
                h.queued -= 1
            if h.con is not None and h.path != mine:
                self._close_handover()
            if read_only and h.con is None:
                with self._read_only_file() as con:
                    yield con
                return
            if h.con is None:
                h.con = self._open_file(read_only=False)
                h.path, h.opened = mine, time.monotonic()
            elif not self._migrated:
                self._migrate(h.con)
            h.depth += 1
            try:
                yield h.con
            except BaseException:
                h.depth -= 1
                self._close_handover()  # never hand on a connection that just failed
                raise
            else:
                h.depth -= 1
                if h.depth == 0:
                    with h.guard:
                        waiting = h.queued
                    held_long = time.monotonic() - h.opened > h.hold_s
                    if not waiting or held_long:
                        self._close_handover()
                        if waiting:
                            time.sleep(h.GAP_S)

    @staticmethod
    def _close_handover() -> None:
        h = _HANDOVER
        if h.con is not None and h.depth == 0:
            h.con.close()
            h.con = None

    def _lake_base(self) -> duckdb.DuckDBPyConnection:
        """The one connection a lake store keeps (attaching costs 0.2 s; a cursor, nothing)."""
        assert self.lake is not None
        if self._lake_con is None:
            con = self.lake.open()
            try:
                self._sync_lake(con)
            except BaseException:
                con.close()
                raise
            self._lake_con = con
        return self._lake_con

    def _lake_reader(self) -> duckdb.DuckDBPyConnection:
        """The read-only connection a lake store keeps for its own queries."""
        if self._lake_reader_con is None:
            self._lake_reader_con = self._open_lake_read_only()
        return self._lake_reader_con

    def _open_lake_read_only(self) -> duckdb.DuckDBPyConnection:
        assert self.lake is not None
        self._lake_base()  # made and migrated first: a read-only attach cannot
        return self.lake.open(read_only=True)

    @_again_on_conflict
    def _sync_lake(self, con: duckdb.DuckDBPyConnection) -> None:
        assert self.lake is not None
        if self.lake.sync_schema(con, migrations(), _now()):
            self._fill_previous(con)  # the one data change a migration made that a lake needs
        self.lake.ensure_leases(con)
        self._migrated = True

    @contextmanager
    def _fresh_lake_read_only(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only lake connection of its own, whose settings a sandbox may lock."""
        with closing(self._open_lake_read_only()) as con:
            yield con

    @contextmanager
    def _snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection of its own for an analyst, on data as of now, that no writer
        ever waits on. DuckDB locks a file for one writer or any readers, so a 70 s query on the
        file itself kept every vote and review out for 70 s: an analyst reads a copy instead,
        taken while holding the file's read lock (only as long as copying takes) and removed
        afterwards. A lake's readers already read a snapshot and block no one: they get a
        read-only connection."""
        if self.lake is not None:
            with self._fresh_lake_read_only() as con:
                yield con
            return
        self._ready_to_read()
        _sweep_snapshots(self.path.parent)
        folder = Path(tempfile.mkdtemp(prefix=f"{_SNAPSHOT_PREFIX}{os.getpid()}-", dir=self.path.parent))
        try:
            copy = folder / self.path.name
            with _LOCK, self._read_only_file():  # no writer anywhere while the bytes are copied
                shutil.copyfile(self.path, copy)
                wal = self.path.with_name(self.path.name + ".wal")
                if wal.exists():  # left by a writer that died; part of the database until replayed
                    shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
            with closing(duckdb.connect(str(copy), read_only=True)) as con:
                yield con
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def _deadline(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Interrupt what `con` runs once `query_timeout_s` has passed; the error that follows
        becomes QueryTimeout, whatever the code inside made of it."""
        limit = self.query_timeout_s
        if limit is None:
            yield
            return
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            con.interrupt()

        timer = threading.Timer(limit, stop)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception:
            if fired.is_set():
                raise QueryTimeout(limit) from None
            raise
        finally:
            timer.cancel()

    @contextmanager
    def analysing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A snapshot for an analyst's reads (trends, export), interrupted after
        `query_timeout_s`; the store's own reads in this thread (`query`) go to it too."""
        if getattr(self._pinned, "con", None) is not None:
            raise RuntimeError("Store.analysing() inside Store.reading()")
        with self._snapshot() as con, self._deadline(con):
            self._pinned.con = con
            try:
                yield con
            finally:
                self._pinned.con = None

    @contextmanager
    def sandbox(self, allowed_paths: list[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for queries typed by a person: no file but `allowed_paths`,
        no network, no extension installed or loaded behind its back, and settings locked.
        (A lake's catalog and data files are attached before the lock, so they stay readable.)
        It reads a snapshot (`_snapshot`) and is interrupted after `query_timeout_s`."""
        with self._snapshot() as con, self._deadline(con):
            if allowed_paths:
                con.execute("SET allowed_paths = ?", [allowed_paths])
            for setting in (
                "SET enable_external_access = false",
                "SET autoinstall_known_extensions = false",
                "SET autoload_known_extensions = false",
                "SET lock_configuration = true",
            ):
                con.execute(setting)
            yield con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connect() as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in migrations():
            if version in done:
                continue
            con.begin()
            try:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, _now()])
            except BaseException:
                con.rollback()
                raise
            con.commit()
        self._migrated = True

    def _catch_up(self) -> None:
        """A reader of a database written by an older shipskip brings its schema up to date first
        (briefly as a writer), so views and columns it reads exist."""
        wanted = {version for version, _, _ in migrations()}
        try:
            with _LOCK:
                self._close_handover()
                with duckdb.connect(str(self.path), read_only=True) as con:
                    done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
        except duckdb.IOException:
            return  # a writer holds it: it migrates; the read retries as usual
        except duckdb.CatalogException:
            done = set()  # a database from before migrations were recorded
        if wanted <= done:
            self._migrated = True
            return
        with self.connect():
            pass

    def init(self) -> None:
        with self.connect():
            pass

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    # -- reviews ---------------------------------------------------------------------

    def begin_run(
        self,
        card: ToolCard,
        kind: str = "review",
        reason: str | None = None,
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
        self._claim(card.slug)
        try:
            run = self._begin_run(card, kind, reason, flow_run_id, unless_reviewed)
        except BaseException:
            self._release(card.slug)
            raise
        if run is None:
            self._release(card.slug)
        return run

    @_again_on_conflict
    def _begin_run(
        self, card: ToolCard, kind: str, reason: str | None, flow_run_id: str | None, unless_reviewed: bool
    ) -> Run | None:
        h = card.content_hash()
        now = _now()
        with self.transaction() as con:
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
                if owner and owner != OWNER and _alive(owner, beat, now, self.lease_s):
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
                [run_id, card.slug, h, kind, reason, flow_run_id, now, OWNER, now],
            )
        return Run(run_id, card.slug, h, kind)

    # -- a lake's tool leases (the file needs none: its writers take turns on the file) ---

    def _claim(self, slug: str) -> None:
        if self.lake is None:
            return
        with self.connect() as con:
            held = self.lake.claim(con, slug, OWNER, self._holder_alive)
        if held is not None:
            owner, beat = held
            raise ToolBusy(slug, owner, beat)

    def _beat(self, slugs: list[str]) -> None:
        if self.lake is not None:
            with self.connect() as con:
                self.lake.beat(con, slugs, OWNER)

    @_again_on_conflict
    def maintain(self, keep_days: int = 7) -> dict[str, int] | None:
        """On a lake, its upkeep (see `Lake.maintain`), and what it did; None on the single
        file, which DuckDB keeps compact at each checkpoint by itself. Safe while others write:
        a maintenance step that collides with a commit is run again."""
        if keep_days < 0:
            raise ShipskipError("--keep-days must be 0 or more")
        if self.lake is None:
            return None
        with self.connect() as con:
            return self.lake.maintain(con, keep_days)

    def sweep_leases(self) -> list[str]:
        """On a lake, drop tool leases whose holder is gone (see `Lake.sweep`); the slugs."""
        if self.lake is None:
            return []
        with self.connect() as con:
            return self.lake.sweep(con, self._holder_alive)

    def _release(self, slug: str) -> None:
        if self.lake is not None:
            with self.connect() as con:
                self.lake.release(con, slug, OWNER)

    def checkpoint(self, run: Run, take: Take) -> None:
        """Keep one seat's take of a running run; returns once it is stored.

        Seats finish in bursts (a whole ingest's seats share the provider), so takes that wait
        for the store at the same moment are written together: each is queued, and whichever
        thread gets the store first writes everything queued, in one transaction. A thread
        whose take another wrote returns at once; a write that fails puts the others' takes
        back for their own threads to write, so a failure costs its own take only."""
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

    @_again_on_conflict
    def _write_queued(self, mine: _Queued) -> None:
        with self.transaction() as con:
            with self._queue_guard:
                if mine.done:
                    return
                batch, self._queue = self._queue, []
            if mine not in batch:  # run again after a conflict: it was put back, or is written again
                batch.append(mine)
            try:
                self._insert_checkpoints(con, batch)
            except BaseException:
                with self._queue_guard:
                    self._queue[:0] = [q for q in batch if q is not mine]
                raise
        for q in batch:
            # Marked once committed. A thread that gets the store before this line writes its
            # take again: a checkpoint is replaced whole, so that costs time, not correctness.
            q.done = True
        self._beat(sorted({q.run.slug for q in batch}))

    @staticmethod
    def _insert_checkpoints(con: duckdb.DuckDBPyConnection, batch: list[_Queued]) -> None:
        now = _now()
        # The last take queued for a seat wins, as when each was written in turn.
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

    def checkpoints(self, run: Run) -> dict[str, Take]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT persona, payload FROM take_checkpoints WHERE run_id = ?", [run.run_id]
            ).fetchall()
        return {p: Take.model_validate_json(payload) for p, payload in rows}

    @_again_on_conflict
    def release_run(self, run: Run) -> None:
        """Give up a running run's lease (its checkpoints stay), so the next run resumes it at once."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET owner = NULL WHERE run_id = ? AND status = 'running'", [run.run_id])
        self._release(run.slug)

    @_again_on_conflict
    def drop_checkpoints(self, run: Run, personas: list[str]) -> None:
        """Forget some seats' checkpoints of a running run, so the next run asks them again."""
        if not personas:
            return
        with self.transaction() as con:
            con.execute(
                "DELETE FROM take_checkpoints WHERE run_id = ? AND persona IN (SELECT unnest(?))",
                [run.run_id, personas],
            )

    @_again_on_conflict
    def abandon_run(self, run: Run) -> None:
        """Forget a run that produced nothing worth keeping (its checkpoints go with it)."""
        with self.transaction() as con:
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])
            con.execute("DELETE FROM runs WHERE run_id = ? AND status = 'running'", [run.run_id])
        self._release(run.slug)

    @_again_on_conflict
    def fail_rerun(self, run: Run, take: Take, reason: str | None) -> None:
        """Record a rerun whose persona failed, and end its run; the current take is untouched."""
        now = _now()
        row = {
            "run_id": run.run_id, "slug": run.slug, "persona": take.persona, "reason": reason,
            "error": take.error or "no take", "model": take.model, "prompt_version": take.prompt_version,
            "prompt_hash": take.prompt_hash, "attempts": take.attempts,
            "prompt_tokens": take.usage.prompt_tokens, "completion_tokens": take.usage.completion_tokens,
            "created_at": now,
        }  # fmt: skip
        with self.transaction() as con:
            started = con.execute("SELECT started_at FROM runs WHERE run_id = ?", [run.run_id]).fetchone()
            row["started_at"] = started[0] if started else now
            cols = ", ".join(row)
            con.execute(
                f"INSERT INTO failed_reruns ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])
            con.execute("DELETE FROM runs WHERE run_id = ? AND status = 'running'", [run.run_id])
        self._release(run.slug)

    def is_reviewed(self, card: ToolCard) -> bool:
        """True when a committed review already read this exact card."""
        return card.slug in self.reviewed_among([card])

    def reviewed_among(self, cards: list[ToolCard]) -> set[str]:
        """Slugs of the cards whose exact content a committed review already read: one query
        for a whole feed, not one connection per entry (15 ms each; a 10,000-entry feed)."""
        if not cards or not self.exists():
            return set()
        wanted = [(c.slug, c.content_hash()) for c in cards]
        with self.connect() as con:
            rows = con.execute(
                "SELECT DISTINCT r.slug FROM runs r JOIN (SELECT unnest(?) AS slug, unnest(?) AS h) w"
                " ON r.slug = w.slug AND r.content_hash = w.h"
                " WHERE r.kind = 'review' AND r.status = 'complete'",
                [[s for s, _ in wanted], [h for _, h in wanted]],
            ).fetchall()
        return {r[0] for r in rows}

    @_again_on_conflict
    def commit_review(
        self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None = None
    ) -> None:
        """Tool, takes and run status land together or not at all. A review passes the panel's
        `verdict` it worked out; a rerun's is the whole panel's after it, read here."""
        verdict_takes = takes
        now = _now()
        seats = [t.persona for t in takes]
        # A handful of statements for the whole panel, not a few per seat: on a lake each
        # statement is a round trip to the catalog.
        with self.transaction() as con:
            self._upsert_tool(con, card, now)
            # Each seat's latest take: the new one's version follows it, and it keeps what it
            # replaces (the `take_changes` view reads that instead of joining every take).
            cur = con.execute(
                "SELECT persona, version, score, verdict, model, prompt_version FROM takes"
                " WHERE slug = ? AND persona IN (SELECT unnest(?)) ORDER BY version",
                [card.slug, seats],
            )
            cols = [d[0] for d in cur.description or []]
            rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            latest = {r["persona"]: r for r in rows}  # in version order: the last one wins
            # The new takes become their seats' current ones in the same transaction.
            con.execute(
                "UPDATE takes SET is_current = false"
                " WHERE slug = ? AND is_current AND persona IN (SELECT unnest(?))",
                [card.slug, seats],
            )
            self._insert_takes(con, run, [(t, latest.get(t.persona, {})) for t in takes], now)
            # A rerun changes one seat; the verdict it records is the whole panel's after it.
            if run.kind == "rerun":
                verdict_takes = self._current(con, card.slug)
            v = verdict if verdict is not None and run.kind != "rerun" else aggregate(verdict_takes)
            con.execute(
                "UPDATE runs SET status = 'complete', finished_at = ?, label = ?, ship = ?, skip = ?,"
                " abstain = ?, ship_pct = ? WHERE run_id = ?",
                [now, v.label, v.ship, v.skip, v.abstain, v.ship_pct, run.run_id],
            )
            con.execute("DELETE FROM take_checkpoints WHERE run_id = ?", [run.run_id])
        self._release(run.slug)

    def _upsert_tool(self, con: duckdb.DuckDBPyConnection, card: ToolCard, now: datetime) -> None:
        h = card.content_hash()
        # MERGE and NOT EXISTS rather than ON CONFLICT: a lake has no keys to conflict on.
        row = {
            "slug": card.slug, "name": card.name, "tagline": card.tagline, "category": card.category,
            "pricing": card.pricing, "entry_tier": card.entry_tier, "description": card.description,
            "source": card.source, "url": card.url, "launched": card.launched, "content_hash": h,
            "updated_at": now,
        }  # fmt: skip
        fields = ", ".join(f"CAST(? AS {_TOOL_TYPES.get(c, 'VARCHAR')}) AS {c}" for c in row)
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

    def _insert_takes(
        self,
        con: duckdb.DuckDBPyConnection,
        run: Run,
        takes: list[tuple[Take, dict[str, Any]]],
        now: datetime,
    ) -> None:
        """One INSERT for the takes of a run, each after the take it replaces (empty: its first)."""
        for t, _ in takes:
            if not _verdict_follows(t.verdict, t.score):
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
                **t.model_dump(include=_TAKE_FIELDS, by_alias=True),
            }
            for t, prev in takes
        ]  # fmt: skip
        if not rows:
            return
        cols = list(rows[0])
        marks = ", ".join(f"({', '.join('?' * len(cols))})" for _ in rows)
        con.execute(
            f"INSERT INTO takes ({', '.join(cols)}) VALUES {marks}", [r[c] for r in rows for c in cols]
        )

    @_again_on_conflict
    def load_parquet(self, table: str, path: Path) -> int:
        """Bulk-load rows (an export, or generated data) through DuckDB's Parquet reader."""

        if table not in EXPORT_TABLES:
            raise ShipskipError(f"cannot load into '{table}'")
        with self.transaction() as con:
            if table == "takes":
                # At most a few hundred distinct pairs, however many takes the file holds.
                pairs = con.execute("SELECT DISTINCT verdict, score FROM read_parquet(?)", [str(path)])
                bad = [(v, n) for v, n in pairs.fetchall() if not _verdict_follows(v, n)]
                if bad:
                    v, n = bad[0]
                    raise ShipskipError(f"{path}: verdict: '{v}' does not follow score {n}")
            before = _count(con, f"SELECT count(*) FROM {table}")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(path)])
            if table in ("takes", "runs"):
                self._mark_current(con)  # loaded takes (or their runs) may change which is current
            if table == "takes":
                # Views read every take as committed (migration 016): takes come with their runs.
                orphans = _count(
                    con,
                    "SELECT count(*) FROM takes t WHERE NOT EXISTS (SELECT 1 FROM runs r"
                    " WHERE r.run_id = t.run_id AND r.status = 'complete')",
                )
                if orphans:
                    raise ShipskipError(
                        f"{path}: run_id: {orphans} takes belong to no completed run; load their runs first"
                    )
                self._fill_previous(con)  # an export from before migration 014 lacks them
            return _count(con, f"SELECT count(*) FROM {table}") - before

    @staticmethod
    def _fill_previous(con: duckdb.DuckDBPyConnection) -> None:
        """Give each take that lacks them its previous version's score, verdict, model and
        prompt version (loaded takes; a lake's takes from before migration 014)."""
        con.execute(
            "UPDATE takes SET prev_score = p.score, prev_verdict = p.verdict, prev_model = p.model,"
            " prev_prompt_version = p.prompt_version FROM takes p"
            " WHERE p.slug = takes.slug AND p.persona = takes.persona AND p.version = takes.version - 1"
            " AND takes.version > 1 AND takes.prev_model IS NULL"
        )

    @staticmethod
    def _mark_current(con: duckdb.DuckDBPyConnection) -> None:
        """Mark, from scratch, the latest committed take of each tool and persona as current."""
        con.execute(
            "UPDATE takes SET is_current = take_id IN ("
            "  SELECT take_id FROM (SELECT t.take_id, row_number() OVER ("
            "    PARTITION BY t.slug, t.persona ORDER BY t.version DESC) AS rn"
            "  FROM takes t JOIN runs r USING (run_id) WHERE r.status = 'complete') WHERE rn = 1)"
        )

    @_again_on_conflict
    def save_eval(
        self, reference: str, model: str, prompt_hash: str, samples: int, summary: dict, results: list
    ) -> str:
        eval_id = uuid.uuid4().hex
        with self.transaction() as con:
            con.execute(
                "INSERT INTO eval_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [eval_id, reference, model, prompt_hash, samples, _now(), json.dumps(summary)],
            )
            for r in results:
                row = {"eval_id": eval_id, **r.model_dump(exclude={"criteria"})}
                row["criteria"] = json.dumps([c.model_dump() for c in r.criteria]) if r.criteria else None
                con.execute(
                    f"INSERT INTO eval_items ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )
        return eval_id

    def eval_items(self, eval_id: str) -> list[dict[str, Any]]:
        """The stored rows of one evaluation (a prefix of its id is enough), criteria parsed."""
        rows = self.query(
            "SELECT * EXCLUDE (eval_id) FROM eval_items WHERE eval_id = "
            "(SELECT min(eval_id) FROM eval_runs WHERE starts_with(eval_id, ?))",
            [eval_id],
        )
        if not rows:
            raise ShipskipError(f"no stored evaluation '{eval_id}'")
        for r in rows:
            r["criteria"] = json.loads(r["criteria"]) if r["criteria"] else []
        return rows

    # -- reads -----------------------------------------------------------------------

    def _current(self, con: duckdb.DuckDBPyConnection, slug: str) -> list[Take]:
        cur = con.execute("SELECT * FROM current_takes WHERE slug = ?", [slug])
        cols = [d[0] for d in cur.description or []]
        takes = [_take_from_row(dict(zip(cols, r, strict=True)), slug) for r in cur.fetchall()]
        return sorted(takes, key=lambda t: seat_key(t.persona))

    def current_takes(self, slug: str) -> list[Take]:
        with self.connect(read_only=True) as con:
            return self._current(con, slug)

    def tool(self, slug: str) -> ToolCard | None:
        rows = self.query("SELECT * EXCLUDE (content_hash, first_seen, updated_at) FROM tools "
                          "WHERE slug = ?", [slug])  # fmt: skip
        if not rows:
            return None
        row = rows[0]
        # A row stored before card URLs were checked may hold another scheme: drop it, keep the tool.
        if row["url"] and not is_web_address(row["url"]):
            row["url"] = ""
        try:
            return ToolCard.model_validate(row)
        except ValidationError as exc:
            # One bad row costs the page that shows it; callers listing many tools leave it out.
            raise StoredRowError("tools", slug, *describe_validation_error(exc)) from None

    def similar(self, slug: str, category: str, limit: int = 5) -> list[str]:
        """Other reviewed tools in the same (normalised) category, most recently updated first."""
        rows = self.query(
            "SELECT slug FROM tools WHERE category = ? AND slug <> ? ORDER BY updated_at DESC, slug LIMIT ?",
            [category, slug, limit],
        )
        return [r["slug"] for r in rows]

    def reviewer_record(self, persona: str, recent: int = 20) -> tuple[list[dict], list[dict]]:
        """A persona's latest current takes (tool, verdict, score, when) and its figures per category."""
        takes = self.query(
            "SELECT t.slug, tools.name, tools.category, t.verdict, t.score, t.created_at, t.suspicious,"
            " t.model, t.uncalibrated"
            " FROM current_takes t JOIN tools USING (slug) WHERE t.persona = ?"
            " ORDER BY t.created_at DESC, t.slug LIMIT ?",
            [persona, recent],
        )
        categories = self.query(
            "SELECT category, takes, scored, mean_score, ship_rate FROM persona_category"
            " WHERE persona = ? ORDER BY takes DESC, category",
            [persona],
        )
        return takes, categories

    def reviewed_at(self, slug: str) -> datetime | None:
        rows = self.query("SELECT max(created_at) AS at FROM committed_takes WHERE slug = ?", [slug])
        return rows[0]["at"] if rows else None

    def history(self, slug: str, persona: str | None = None) -> list[dict[str, Any]]:
        """Every committed take and every failed rerun of a tool, oldest first per persona.

        A failed rerun has no version, verdict or score; `status` says 'failed' and `error` why.
        """
        where = "slug = ?" + (" AND persona = ?" if persona else "")
        params: list[Any] = [slug, persona] * 2 if persona else [slug, slug]
        sql = (
            "SELECT persona, version, verdict, score, model, prompt_version, created_at, kind, reason,"
            " take, abstain_reason, error, status,"
            " score - lag(score IGNORE NULLS) OVER (PARTITION BY persona ORDER BY created_at) AS delta"
            " FROM ("
            "  SELECT t.persona, t.version, t.verdict, t.score, t.model, t.prompt_version, t.created_at,"
            "  r.kind, r.reason, t.take, t.abstain_reason, t.error, 'complete' AS status"
            f"  FROM committed_takes t JOIN runs r USING (run_id) WHERE t.{where}"
            "  UNION ALL"
            "  SELECT persona, NULL, NULL, NULL, model, prompt_version, created_at,"
            "  'rerun', reason, NULL, NULL, error, 'failed'"
            f"  FROM failed_reruns WHERE {where}"
            ")"
        )
        return self.query(sql + " ORDER BY persona, created_at", params)

    @contextmanager
    def _voter_lock(self, slug: str, voter: str) -> Iterator[None]:
        """On a lake, one process at a time votes as one voter on one tool. A vote reads, then
        inserts or updates, and DuckLake lets two inserts into one table commit side by side,
        so two machines voting as one voter at once could both insert. The lock is a lease in
        the PostgreSQL catalog, as a review's is; the file needs none (its writers take turns)."""
        if self.lake is None:
            yield
            return
        key = f"vote:{slug}:{voter}"
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            with self.connect() as con:
                held = self.lake.claim(con, key, OWNER, self._holder_alive)
            if held is None:
                break
            if time.monotonic() > deadline:
                raise ToolBusy(key, *held)
            time.sleep(0.02)
        try:
            yield
        finally:
            self._release(key)

    @_again_on_conflict
    def add_vote(self, slug: str, vote: str, voter: str) -> bool:
        """Record or change `voter`'s vote on a tool; True when it changed an earlier vote."""
        with self._voter_lock(slug, voter):
            return self._add_vote(slug, vote, voter)

    def _add_vote(self, slug: str, vote: str, voter: str) -> bool:
        now = _now()
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [slug]).fetchone():
                raise ShipskipError(f"no reviewed tool with slug '{slug}'")
            earlier = con.execute(
                "SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter]
            ).fetchone()
            if earlier:
                con.execute(
                    "UPDATE votes SET vote = ?, updated_at = ? WHERE slug = ? AND voter = ?",
                    [vote, now, slug, voter],
                )
            else:
                con.execute(
                    "INSERT INTO votes (slug, vote, created_at, voter, updated_at) VALUES (?, ?, ?, ?, ?)",
                    [slug, vote, now, voter, now],
                )
        return earlier is not None

    def votes(self, slug: str) -> CommunityVotes:
        rows = self.query(
            "SELECT count(*) FILTER (WHERE vote = 'ship') AS ship,"
            " count(*) FILTER (WHERE vote = 'skip') AS skip FROM votes WHERE slug = ?",
            [slug],
        )
        return CommunityVotes(**rows[0])

    # -- the site --------------------------------------------------------------------

    def site_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Everything the static site shows, in a few bulk reads on one connection (a read per
        tool cost 5 queries a tool: a minute for 10,000). Keys: `tools` (card columns),
        `takes` (current takes, as rows), `labels` (editors' current labels), `votes`,
        `reviewed` (latest take per tool), `updates` (the last two committed takes of each seat
        taken more than once, newest first, with the run's reason) and `runs` (each completed
        review's tool and time)."""
        with self.reading():
            return {
                "tools": self.query(
                    "SELECT * EXCLUDE (content_hash, first_seen, updated_at) FROM tools ORDER BY slug"
                ),
                "takes": self.query("SELECT * FROM current_takes"),
                "labels": self.query(
                    "SELECT slug, persona, editor, verdict, score, reason, created_at FROM current_labels"
                    " ORDER BY slug, persona, created_at, label_id"
                ),
                "votes": self.query(
                    "SELECT slug, count(*) FILTER (WHERE vote = 'ship') AS ship,"
                    " count(*) FILTER (WHERE vote = 'skip') AS skip FROM votes GROUP BY slug"
                ),
                "reviewed": self.query(
                    "SELECT slug, max(created_at) AS at FROM committed_takes GROUP BY slug"
                ),
                "updates": self.query(
                    "SELECT slug, persona, created_at, reason, score, verdict, take, abstain_reason, rn"
                    " FROM ("
                    " SELECT t.slug, t.persona, t.created_at, r.reason, t.score, t.verdict, t.take,"
                    " t.abstain_reason,"
                    " row_number() OVER (PARTITION BY t.slug, t.persona ORDER BY t.created_at DESC) AS rn,"
                    " count(*) OVER (PARTITION BY t.slug, t.persona) AS n"
                    " FROM committed_takes t JOIN runs r USING (run_id))"
                    " WHERE n >= 2 AND rn <= 2 ORDER BY slug, persona, rn"
                ),
                "runs": self.query(
                    "SELECT slug, finished_at FROM runs WHERE status = 'complete' AND finished_at IS NOT NULL"
                    " ORDER BY finished_at, slug"
                ),
            }

    @staticmethod
    def take_from_row(row: dict[str, Any], slug: str) -> Take:
        """A `current_takes` row from `site_rows` as a Take (StoredRowError when it fails)."""
        return _take_from_row(row, slug)

    def page_digests(self, out_dir: str) -> dict[str, str]:
        """Each published page of the site in `out_dir`: its path there and its inputs' digest."""
        if not self.exists():
            return {}
        rows = self.query("SELECT path, digest FROM page_digests WHERE out_dir = ?", [out_dir])
        return {r["path"]: r["digest"] for r in rows}

    @_again_on_conflict
    def record_pages(self, out_dir: str, written: dict[str, str], removed: list[str]) -> None:
        """Remember the digests of pages just written, and forget the pages just removed, in one
        short transaction (lists bound whole: a row per call took 1 ms a page)."""
        gone = [*written, *removed]
        if not gone:
            return
        with self.transaction() as con:
            con.execute(
                "DELETE FROM page_digests WHERE out_dir = ? AND path IN (SELECT unnest(?))", [out_dir, gone]
            )
            if written:
                con.execute(
                    "INSERT INTO page_digests (out_dir, path, digest, written_at)"
                    " SELECT ?, unnest(?), unnest(?), ?",
                    [out_dir, list(written), list(written.values()), _now()],
                )

    # -- readers on the web ----------------------------------------------------------

    @_again_on_conflict
    def add_marks(self, batch: list[tuple[str, str, str, str]]) -> list[str]:
        """Readers' votes and "Helpful?" marks from `shipskip web`, many in one short
        transaction (DuckDB has one writer per file: a transaction per click would queue).
        Each item is (kind, slug, value, voter): kind "vote" with value ship/skip, changeable as
        `add_vote`; kind "helpful" with value a persona, once per reader. Returns, per item,
        "recorded", "changed", "unchanged", or "unknown" for a slug (or seat) with no
        current take, which stores nothing."""
        out: list[str] = []
        now = _now()
        with self.transaction() as con:
            for kind, slug, value, voter in batch:
                if kind == "vote":
                    if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [slug]).fetchone():
                        out.append("unknown")
                        continue
                    earlier = con.execute(
                        "SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter]
                    ).fetchone()
                    if earlier is None:
                        con.execute(
                            "INSERT INTO votes (slug, vote, created_at, voter, updated_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            [slug, value, now, voter, now],
                        )
                        out.append("recorded")
                    elif earlier[0] == value:
                        out.append("unchanged")
                    else:
                        con.execute(
                            "UPDATE votes SET vote = ?, updated_at = ? WHERE slug = ? AND voter = ?",
                            [value, now, slug, voter],
                        )
                        out.append("changed")
                    continue
                seat = con.execute(
                    "SELECT 1 FROM current_takes WHERE slug = ? AND persona = ? AND verdict IS NOT NULL",
                    [slug, value],
                ).fetchone()
                if not seat:
                    out.append("unknown")
                    continue
                if con.execute(
                    "SELECT 1 FROM helpful_marks WHERE slug = ? AND persona = ? AND voter = ?",
                    [slug, value, voter],
                ).fetchone():
                    out.append("unchanged")
                    continue
                con.execute(
                    "INSERT INTO helpful_marks (slug, persona, voter, created_at) VALUES (?, ?, ?, ?)",
                    [slug, value, voter, now],
                )
                out.append("recorded")
        return out

    def current_models(self) -> list[dict[str, Any]]:
        """Each model behind a current take, and whether any of its takes was uncalibrated."""
        return self.query(
            "SELECT model, bool_or(coalesce(uncalibrated, false)) AS uncalibrated FROM current_takes"
            " WHERE model IS NOT NULL GROUP BY model ORDER BY model"
        )

    def helpful_counts(self, slug: str) -> dict[str, int]:
        """How many readers marked each seat's take on a tool helpful."""
        rows = self.query(
            "SELECT persona, count(*) AS n FROM helpful_marks WHERE slug = ? GROUP BY persona", [slug]
        )
        return {r["persona"]: r["n"] for r in rows}

    def voter_choice(self, slug: str, voter: str) -> str | None:
        rows = self.query("SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter])
        return rows[0]["vote"] if rows else None

    # -- prices ----------------------------------------------------------------------

    _PRICE_COLUMNS = (
        "model", "usd_per_mtok_prompt", "usd_per_mtok_cached", "usd_per_mtok_completion", "as_of",
    )  # fmt: skip

    def prices(self) -> list[dict[str, Any]]:
        """model_prices, by model: the prices the cost views read."""
        return self.query(f"SELECT {', '.join(self._PRICE_COLUMNS)} FROM model_prices ORDER BY model")

    @_again_on_conflict
    def set_prices(self, rows: list[tuple[str, float, float | None, float, date | None]]) -> int:
        """Put these prices (model, input, cached input, output, as of) in model_prices, each
        replacing its model's row; rows already as given are left alone, so a run that changes
        no price writes nothing (no commit on a lake). Returns how many rows changed."""
        with self.transaction() as con:
            have = {
                r[0]: tuple(r)
                for r in con.execute(f"SELECT {', '.join(self._PRICE_COLUMNS)} FROM model_prices").fetchall()
            }
            changed = [tuple(r) for r in rows if have.get(r[0]) != tuple(r)]
            for row in changed:
                con.execute("DELETE FROM model_prices WHERE model = ?", [row[0]])
                con.execute(
                    f"INSERT INTO model_prices ({', '.join(self._PRICE_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                    list(row),
                )
        return len(changed)

    # -- batch mode ------------------------------------------------------------------

    def open_batches(self) -> list[dict[str, Any]]:
        """Batch jobs not collected yet, oldest first."""
        return self.query(
            "SELECT batch_key, batch_id, base_url, model, requests, status, created_at FROM llm_batches"
            " WHERE collected_at IS NULL ORDER BY created_at"
        )

    @_again_on_conflict
    def record_batch(self, key: str, base_url: str, model: str, requests: list[tuple[str, str]]) -> None:
        """A batch job about to be submitted, with its (custom_id, slug) requests: recorded
        first, so a run killed before it learns the job's id finds the job by its key."""
        now = _now()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO llm_batches (batch_key, base_url, model, requests, status, created_at)"
                " VALUES (?, ?, ?, ?, 'submitting', ?)",
                [key, base_url, model, len(requests), now],
            )
            con.executemany(
                "INSERT INTO batch_requests (custom_id, batch_key, slug, state, prompt_tokens,"
                " completion_tokens, updated_at) VALUES (?, ?, ?, 'submitted', 0, 0, ?)",
                [[cid, key, slug, now] for cid, slug in requests],
            )

    @_again_on_conflict
    def batch_submitted(self, key: str, batch_id: str | None, status: str) -> None:
        """The provider's id of a recorded job (None: it was never submitted; forget it)."""
        with self.transaction() as con:
            if batch_id is None:
                con.execute("DELETE FROM batch_requests WHERE batch_key = ?", [key])
                con.execute("DELETE FROM llm_batches WHERE batch_key = ?", [key])
                return
            con.execute(
                "UPDATE llm_batches SET batch_id = ?, status = ? WHERE batch_key = ?", [batch_id, status, key]
            )

    @_again_on_conflict
    def collect_batch(self, key: str, status: str, results: list[dict[str, Any]]) -> None:
        """A finished job: each request's answer (state, p_yes, source, tokens, model, error),
        every request of it settled as answered or failed, and the job marked collected."""
        now = _now()
        with self.transaction() as con:
            for r in results:
                con.execute(
                    "UPDATE batch_requests SET state = ?, p_yes = ?, source = ?, prompt_tokens = ?,"
                    " completion_tokens = ?, model = ?, error = ?, updated_at = ?"
                    " WHERE custom_id = ? AND batch_key = ?",
                    [r["state"], r.get("p_yes"), r.get("source"), r.get("prompt_tokens", 0),
                     r.get("completion_tokens", 0), r.get("model"), r.get("error"), now, r["custom_id"], key],
                )  # fmt: skip
            # Lines the provider returned nothing for (an expired job's unrun lines) failed.
            con.execute(
                "UPDATE batch_requests SET state = 'failed', error = ?, updated_at = ?"
                " WHERE batch_key = ? AND state = 'submitted'",
                [f"no result (job {status})", now, key],
            )
            con.execute(
                "UPDATE llm_batches SET status = ?, collected_at = ? WHERE batch_key = ?", [status, now, key]
            )

    def batch_requests(self, slugs: list[str]) -> dict[str, dict[str, Any]]:
        """Every batched question of these tools, by custom_id."""
        if not slugs:
            return {}
        marks = ", ".join("?" * len(slugs))
        rows = self.query(
            "SELECT custom_id, batch_key, slug, state, p_yes, source, prompt_tokens, completion_tokens,"
            f" model, error FROM batch_requests WHERE slug IN ({marks})",
            list(slugs),
        )
        return {r["custom_id"]: r for r in rows}

    # -- editors' labels ---------------------------------------------------------------

    @_again_on_conflict
    def add_label(self, label: EditorLabel) -> str:
        """Store an editor's call on a seat, tied to the seat's current take; the editor's earlier
        label on that seat stays as history (`current_labels` shows the newest). Its id."""
        label_id = uuid.uuid4().hex
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [label.slug]).fetchone():
                raise UnknownTool(label.slug)
            take = con.execute(
                "SELECT take_id FROM current_takes WHERE slug = ? AND persona = ?",
                [label.slug, label.persona],
            ).fetchone()
            con.execute(
                "INSERT INTO labels (label_id, slug, persona, editor, verdict, score, reason, take_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [label_id, label.slug, label.persona, label.editor, label.verdict, label.score,
                 label.reason, take[0] if take else None, label.created_at or _now()],
            )  # fmt: skip
        return label_id

    def labels(self, slug: str, persona: str | None = None, history: bool = False) -> list[EditorLabel]:
        """Each editor's current label on a tool's seats (every label ever, oldest first, with
        `history`)."""
        where = "slug = ?" + (" AND persona = ?" if persona else "")
        rows = self.query(
            "SELECT slug, persona, editor, verdict, score, reason, created_at"
            f" FROM {'labels' if history else 'current_labels'} WHERE {where}"
            " ORDER BY persona, created_at, label_id",
            [slug, persona] if persona else [slug],
        )
        return [EditorLabel.model_validate(r) for r in rows]

    def label_queue(self, limit: int = 20) -> list[dict[str, Any]]:
        """Tools whose panel verdict is least certain, for editors to label first: the seats most
        evenly split (ship % nearest 50) first, then the scores nearest the ship line. A tool
        every one of whose seats already has an editor's label is left out."""
        return self.query(
            "WITH seats AS ("
            "  SELECT slug, count(*) AS seats,"
            "  avg(abs(score - ?)) FILTER (WHERE verdict IS NOT NULL AND NOT suspicious) AS margin"
            "  FROM current_takes GROUP BY slug),"
            " labelled AS ("
            "  SELECT slug, count(DISTINCT persona) AS labelled FROM current_labels GROUP BY slug)"
            " SELECT v.slug, tools.name, v.label, v.ship, v.skip, v.abstain, v.ship_pct,"
            "  round(s.margin, 1) AS mean_distance_to_line, coalesce(l.labelled, 0) AS labelled, s.seats"
            " FROM panel_verdicts v JOIN tools USING (slug) JOIN seats s USING (slug)"
            " LEFT JOIN labelled l USING (slug)"
            " WHERE coalesce(l.labelled, 0) < s.seats"
            " ORDER BY abs(coalesce(v.ship_pct, 50) - 50), s.margin NULLS LAST, v.slug LIMIT ?",
            [SHIP_THRESHOLD, limit],
        )

    def labelled_answers(self, model: str) -> list[dict[str, Any]]:
        """The latest editor's label on each seat whose labelled take the checklist scored with
        `model`, with that take's stored answers (criteria, relevance), prompt version and hash,
        and whether its answers were corrected as an uncalibrated model's."""
        return self.query(
            "SELECT slug, persona, verdict, score, criteria, relevance, prompt_version, prompt_hash,"
            " uncalibrated FROM ("
            "  SELECT l.slug, l.persona, l.verdict, l.score, t.criteria, t.relevance, t.prompt_version,"
            "  t.prompt_hash, coalesce(t.uncalibrated, false) AS uncalibrated,"
            "  row_number() OVER (PARTITION BY l.slug, l.persona"
            "   ORDER BY l.created_at DESC, l.label_id DESC) AS rn"
            "  FROM current_labels l JOIN takes t ON t.take_id = l.take_id"
            "  WHERE t.model = ? AND t.scoring = 'checklist' AND t.criteria IS NOT NULL"
            ") WHERE rn = 1 ORDER BY slug, persona",
            [model],
        )

    def catalogue(self) -> list[dict[str, Any]]:
        """Every reviewed tool with its day (launched, or the day first reviewed) and its
        panel's ship %, for the catalogue facts (`shipskip.catalogue`), which keep only the
        tools before a card's own day."""
        return self.query(
            "SELECT t.slug, t.name, t.tagline, t.description, t.category,"
            " coalesce(t.launched, CAST(t.first_seen AS DATE)) AS day, v.ship_pct"
            " FROM tools t LEFT JOIN panel_verdicts v USING (slug) ORDER BY day, t.slug"
        )


# Columns of `tools` that are not text, for the row a review merges in.
_TOOL_TYPES = {"launched": "DATE", "updated_at": "TIMESTAMP"}

# Take fields stored in a column of the same name (`text` in the `take` column: its alias).
_TAKE_FIELDS = {
    "persona", "verdict", "score", "text", "abstain_reason", "error", "model", "prompt_version",
    "prompt_hash", "temperature", "attempts", "latency_ms", "suspicious", "rerun_reason", "clean_score",
    "grounded", "samples", "score_spread", "verdict_flips", "scoring", "relevance",
    "composed", "calibration", "uncalibrated", "counted", "not_counted_reason", "p_ship",
}  # fmt: skip


_TAKE_COLUMNS = [Take.model_fields[f].serialization_alias or f for f in sorted(_TAKE_FIELDS)]


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


def _take_from_row(row: dict[str, Any], slug: str = "") -> Take:
    try:
        return _validate_take_row(row)
    except ValidationError as exc:
        raise StoredRowError("takes", f"{slug}/{row['persona']}", *describe_validation_error(exc)) from None


def _validate_take_row(row: dict[str, Any]) -> Take:
    return Take.model_validate(
        {
            **{c: row[c] for c in _TAKE_COLUMNS},
            "counted": row["counted"] is not False,  # a take from before migration 020 counted
            "usage": Usage(
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                cached_tokens=row["cached_tokens"],
                # NULL on a lake's takes from before migration 023.
                batch_prompt_tokens=row.get("batch_prompt_tokens") or 0,
                batch_completion_tokens=row.get("batch_completion_tokens") or 0,
            ),
            "criteria": json.loads(row["criteria"]) if row["criteria"] else [],
        }
    )
