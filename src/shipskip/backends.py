"""Where the store's rows live, and how a connection to them is had: what every backend offers
(`Backend`), for the single DuckDB file (`store_file.FileBackend`) or a DuckLake that many
machines share (`store_lake.LakeBackend`).

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
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from .errors import QueryTimeout

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

    def linger(self, idle_s: float) -> None:
        """Keep the connection open between writes until another process asks for it or it
        sits `idle_s` unused (`let_go`, called often, checks); a lake's needs no keeping."""

    def let_go(self) -> None: ...

    # -- checkpoints kept beside the leases --------------------------------------------
    # By default a running run's checkpoints are rows of the store's `take_checkpoints`,
    # written by the ledger. A backend whose leases live elsewhere may keep them there too:
    # these calls then store, read and forget them, and answer True (or the rows).

    def put_checkpoints(self, rows: list[tuple[str, str, str, str]]) -> bool:
        """Keep checkpoints (run id, slug, persona, payload), each replacing that persona's, and
        renew those tools' leases; False where they belong in the store's own tables."""
        return False

    def checkpoints(self, run_id: str) -> list[tuple[str, str]]:
        """(persona, payload) of the checkpoints this backend keeps for a run."""
        return []

    def forget_checkpoints(self, run_id: str, personas: list[str] | None = None) -> None:
        """Drop a run's checkpoints that this backend keeps (only those personas', if named)."""

    def finish(self, runs: list[tuple[str, str]]) -> None:
        """Committed runs (run id, slug): forget the checkpoints kept here, give up the leases."""
        for run_id, slug in runs:
            self.forget_checkpoints(run_id)
            self.release(slug)

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
