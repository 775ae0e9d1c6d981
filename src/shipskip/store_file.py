"""The store in one DuckDB file (the default): `FileBackend`, with the handover that lets a
process's threads share one open connection, and analysts' snapshots of the file.

File connections are short-lived on purpose: DuckDB lets one process write a file at a time,
so a review holds the file only while it writes, and readers in other processes get in
between, after a short retried wait.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from . import migrate
from .backends import (
    _LOCK,
    Backend,
    alive,
    is_lock_conflict,
    now,
)
from .errors import ShipskipError


class _Handover:
    """Group commit for the file. Opening it costs 14 ms, a write on an open connection about
    one: so a writer that finishes while other threads of this process queue for the file
    hands them its open connection instead of closing it. Once no one here is waiting, or after
    `hold_s` (SHIPSKIP_STORE_HOLD_S), it is closed, and other processes (an analyst, another
    worker) get their turn. A process kept out touches the file's ".wanted" file each time it
    retries; a holder that finds it touched since it opened lets go after its current write."""

    # After closing with threads queued or when asked, the file stays closed this long.
    GAP_S = 0.05

    def __init__(self) -> None:
        self.queued = 0
        self.guard = threading.Lock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.path = ""
        self.opened = 0.0
        self.depth = 0
        self.hold_s = 1.0
        self.linger_s, self.linger_path = 0.0, ""  # `Backend.linger`, for one file
        self.opened_ns = 0  # wall clock, to compare with the "wanted" file's time
        self.used = 0.0


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
        self.wanted = self.path.with_name(self.path.name + ".wanted")  # see _Handover
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
            # Short waits: a holder that was asked lets go for GAP_S, which a 1 s wait missed.
            wait=wait_random_exponential(multiplier=0.01, max=_Handover.GAP_S),
            stop=stop_after_delay(self.lock_wait_s),
            before_sleep=lambda _: self._want(),
            reraise=True,
        )

    def _want(self) -> None:
        with suppress(OSError):
            self.wanted.touch()

    def _asked_for(self) -> bool:  # since this process opened the file
        with suppress(OSError):
            return self.wanted.stat().st_mtime_ns >= _HANDOVER.opened_ns
        return False

    def linger(self, idle_s: float) -> None:
        _HANDOVER.linger_s, _HANDOVER.linger_path = idle_s, str(self.path.resolve())

    def let_go(self) -> None:
        h = _HANDOVER
        with _LOCK:
            if h.con is not None and (self._asked_for() or time.monotonic() - h.used > h.linger_s):
                self._close_handover()

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
                h.path, h.opened, h.opened_ns = mine, time.monotonic(), time.time_ns()
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
                    h.used = time.monotonic()
                    held_long = h.used - h.opened > h.hold_s
                    # Kept for this process's next writer (up to hold_s), or lingering, unless
                    # another process asked for the file: then it has it after this write.
                    lingers = h.linger_s > 0 and h.path == h.linger_path
                    keep = (waiting and not held_long) or (lingers and not waiting)
                    asked = keep and self._asked_for()
                    if not keep or asked:
                        self._close_handover()
                        if waiting or asked:
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
