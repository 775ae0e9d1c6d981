"""Where the store's rows live, and how a connection to them is had: the single DuckDB file
(`FileBackend`, here) or a DuckLake that many machines share (`store_lake.LakeBackend`).

A backend owns connections, transactions and the tools' leases, and knows no table of the
application (Datasette's `Database` is the model): the ledger, queries and writes modules hold
the SQL. The file's lease calls do nothing, since its writers take turns on the file itself.

File connections are short-lived on purpose: DuckDB lets one process write a file at a time,
so a review holds the file only while it writes, and readers in other processes get in
between, after a short retried wait. A lake has no such lock: its writers commit optimistically,
a conflicting commit is retried whole, and a tool's lease in PostgreSQL says who may write it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from tenacity import Retrying, retry, retry_if_exception, stop_after_delay, wait_random_exponential

from . import migrate
from .errors import QueryTimeout, ShipskipError

# Who holds a run: this process on this machine.
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    """The store's one clock: UTC without a zone, as every time the store keeps."""
    return datetime.now(UTC).replace(tzinfo=None)


def alive(owner: str, heartbeat: datetime | None, at: datetime, lease_s: float = 900.0) -> bool:
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and (at - heartbeat).total_seconds() < lease_s


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """A count(*) query's one value (a count always has one row)."""
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def is_write_conflict(exc: BaseException) -> bool:
    # A lake's writers commit optimistically: one that loses to another's commit is rolled
    # back, whether DuckLake notices (a conflict) or its PostgreSQL catalog does.
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        (isinstance(exc, duckdb.TransactionException) and "conflict" in text)
        or "could not serialize access" in text
    )


# Each writing method is one transaction, so one that lost a conflict is simply run again.
again_on_conflict = retry(
    retry=retry_if_exception(is_write_conflict),
    wait=wait_random_exponential(multiplier=0.05, max=2.0),
    stop=stop_after_delay(120),
    reraise=True,
)


@functools.cache
def no_pandas_search() -> None:
    """DuckDB's Python binding tries `import pandas` for every parameter it binds. Where pandas
    is not installed, each failed try searches sys.path again: 0.1 ms a value, about 15 ms a
    review's commit, and a fifth of an ingest's time (py-spy). An empty entry in sys.modules
    makes the same import fail at once, with the same ModuleNotFoundError. Done when the first
    store is made rather than at import, so importing shipskip changes nothing."""
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None  # type: ignore[assignment]


class Backend:
    """What the store asks of where its rows live. Subclasses give `_connect`, `snapshot`,
    `exists` and `describe`; the lease calls do nothing unless a backend needs them."""

    def __init__(self, lock_wait_s: float, query_timeout_s: float | None, lease_s: float) -> None:
        no_pandas_search()
        self.lock_wait_s = lock_wait_s
        # Analysts' queries (`sandbox`, `analysing`) are interrupted after this long; None: never.
        self.query_timeout_s = query_timeout_s
        # A run whose holder shows no sign of life for this long is taken to be abandoned.
        self.lease_s = lease_s
        self.migrated = False
        # A thread's read connection while it reads several things in a row (`reading`).
        self._pinned = threading.local()

    def exists(self) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _connect(self, read_only: bool) -> Any:  # a context manager yielding a connection
        raise NotImplementedError

    def snapshot(self) -> Any:  # a context manager yielding an analyst's own connection
        raise NotImplementedError

    # -- leases: one process writes a tool at a time -----------------------------------

    def holder_alive(self, owner: str, heartbeat: datetime | None) -> bool:
        return alive(owner, heartbeat, now(), self.lease_s)

    def claim(self, slug: str) -> None:
        """Take the tool's lease, or raise ToolBusy."""

    def beat(self, slugs: list[str]) -> None:
        """Renew the leases this process holds on these tools."""

    def release(self, slug: str) -> None:
        """Give up the tool's lease."""

    def sweep(self) -> list[str]:
        """Drop leases whose holder is gone; the slugs."""
        return []

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lease `key` for the block, waiting up to `lock_wait_s` for it."""
        yield

    def maintain(self, keep_days: int) -> dict[str, int] | None:
        """The backend's upkeep, and what it did; None where there is none to do."""
        return None

    # -- checkpoints kept beside the leases --------------------------------------------
    # By default a running run's checkpoints are rows of the store's `take_checkpoints`,
    # written by the ledger. A backend whose leases live elsewhere may keep them there too:
    # these calls then store, read and forget them, and answer True (or the rows).

    def put_checkpoints(self, rows: list[tuple[str, str, str, str]]) -> bool:
        """Keep checkpoints (run id, slug, persona, payload), each replacing that seat's, and
        renew those tools' leases; False where they belong in the store's own tables."""
        return False

    def checkpoints(self, run_id: str) -> list[tuple[str, str]]:
        """(persona, payload) of the checkpoints this backend keeps for a run."""
        return []

    def forget_checkpoints(self, run_id: str, personas: list[str] | None = None) -> None:
        """Drop a run's checkpoints that this backend keeps (only those seats', if named)."""

    # -- connections -------------------------------------------------------------------

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
        with self._connect(read_only) as con:
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

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

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
        with self.snapshot() as con, self._deadline(con):
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
        It reads a snapshot (`snapshot`) and is interrupted after `query_timeout_s`."""
        with self.snapshot() as con, self._deadline(con):
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
# Analysts' snapshots of the file sit beside it while they are read: .shipskip-snapshot-PID-xxxx/
_SNAPSHOT_PREFIX = ".shipskip-snapshot-"
_SNAPSHOT_RE = re.compile(r"^\.shipskip-snapshot-(\d+)-")


def _sweep_snapshots(folder: Path) -> None:
    """Remove analysts' snapshots left by processes that died before removing their own."""
    for entry in folder.glob(f"{_SNAPSHOT_PREFIX}*"):
        m = _SNAPSHOT_RE.match(entry.name)
        if m and not alive(f"{socket.gethostname()}:{m.group(1)}", None, now()):
            shutil.rmtree(entry, ignore_errors=True)


class FileBackend(Backend):
    """The single DuckDB file (the default store)."""

    def __init__(
        self,
        path: Path,
        lock_wait_s: float,
        query_timeout_s: float | None,
        lease_s: float,
        hold_s: float | None,
    ) -> None:
        super().__init__(lock_wait_s, query_timeout_s, lease_s)
        self.path = Path(path)
        if hold_s is not None:
            _HANDOVER.hold_s = hold_s  # one file handover per process, as the settings say

    def exists(self) -> bool:
        return self.path.exists()

    def describe(self) -> str:
        return str(self.path)

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only:
            self._ready_to_read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._shared(read_only) as con:
            yield con

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_lock_conflict),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            stop=stop_after_delay(self.lock_wait_s),
            reraise=True,
        )

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
        if not self.migrated:
            self._catch_up()

    def _open_file(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            for attempt in self._retrying():
                with attempt:
                    con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                raise
            # DuckDB's message names the process holding the file; pass it on in one line.
            holder = re.search(r"PID (\d+)", str(exc))
            who = f"process {holder.group(1)}" if holder else "another process"
            raise ShipskipError(
                f"{self.path}: {who} held the database for over {self.lock_wait_s:.0f} s; try again"
            ) from None
        if not read_only and not self.migrated:
            try:
                self._migrate(con)
            except BaseException:
                con.close()
                raise
        return con

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        migrate.migrate(con, now())
        self.migrated = True

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
            elif not self.migrated:
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

    def _catch_up(self) -> None:
        """A reader of a database written by an older shipskip brings its schema up to date first
        (briefly as a writer), so views and columns it reads exist."""
        wanted = {version for version, _, _ in migrate.migrations()}
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
            self.migrated = True
            return
        with self.connect():
            pass

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection of its own for an analyst, on data as of now, that no writer
        ever waits on. DuckDB locks a file for one writer or any readers, so a 70 s query on the
        file itself kept every vote and review out for 70 s: an analyst reads a copy instead,
        taken while holding the file's read lock (only as long as copying takes) and removed
        afterwards."""
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
