"""The store on many machines: a DuckLake whose catalog is a PostgreSQL database and whose
Parquet files live on a path every machine shares.

Part of the store: `Lake` speaks to the lake and its catalog, `LakeBackend` is the store's
backend on it (connections, the ATTACH, the leases). DuckLake refuses primary keys, unique
constraints and indexes, so the guarantees the single file takes from them come from
PostgreSQL itself: a lease row per tool (`shipskip_tool_leases`, primary key on the slug)
decides which process may write a tool's runs and takes. The lake's tables and views are
derived from the single file's migrations, so each table and view is written down once.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from . import backends, migrate
from .backends import OWNER, Backend, again_on_conflict
from .errors import ShipskipError, ToolBusy
from .lake_leases import CATALOG_ALIAS, LeaseTables, sql_literal

ALIAS = "lake"
_CATALOG_POOL = 32
_PASSWORD_RE = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """A catalog error may quote the connection string: never let its password through."""
    return _PASSWORD_RE.sub(r"\1***", text)


def extension_file(dist: str) -> Path:
    """The extension binary inside its registry package (duckdb-extension-*): nothing is
    downloaded, and the package's version must be duckdb's own."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ShipskipError(f"the DuckLake store needs the package {dist}=={duckdb.__version__}") from None
    for f in files:
        if str(f).endswith(".duckdb_extension"):
            if f"v{duckdb.__version__}" not in str(f):
                raise ShipskipError(f"{dist} is built for another duckdb than {duckdb.__version__}")
            return Path(str(f.locate()))
    raise ShipskipError(f"{dist} holds no .duckdb_extension file")


def _postgres_extension() -> Path:
    # The postgres wheel names its file postgres.duckdb_extension, but DuckDB derives the entry
    # point from the file name and the entry point is postgres_scanner: load it under that name.
    source = extension_file("duckdb-extension-postgres")
    folder = Path(tempfile.gettempdir()) / f"shipskip-duckdb-{duckdb.__version__}-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    owned = folder.lstat()
    if folder.is_symlink() or owned.st_uid != os.getuid() or owned.st_mode & 0o022:
        # In a shared /tmp, a folder someone else made could point the load anywhere.
        raise ShipskipError(f"{folder}: not a private folder of this user; remove it and retry")
    link = folder / "postgres_scanner.duckdb_extension"
    if not (link.is_symlink() and link.resolve() == source.resolve()):
        temp = folder / f".{os.getpid()}.{socket.gethostname()}.tmp"
        temp.unlink(missing_ok=True)
        temp.symlink_to(source)
        os.replace(temp, link)  # atomic: two processes may race here
    return link


class Lake(LeaseTables):
    """Where a DuckLake store lives: the catalog's libpq connection string and the data path."""

    def __init__(self, catalog: str, data_path: Path) -> None:
        self.catalog = catalog
        self.data_path = Path(data_path)

    def __repr__(self) -> str:
        return f"Lake(catalog={scrub(self.catalog)!r}, data_path={str(self.data_path)!r})"

    def describe(self) -> str:
        return f"DuckLake at {self.data_path} (catalog {scrub(self.catalog)})"

    def open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection with the lake attached and in use (and, for a writer, the catalog
        database attached too, for the leases)."""

        def attach(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"LOAD {sql_literal(str(extension_file('duckdb-extension-ducklake')))}")
            con.execute(f"LOAD {sql_literal(str(_postgres_extension()))}")
            if not read_only:
                self.data_path.mkdir(parents=True, exist_ok=True)
            options = f"DATA_PATH {sql_literal(str(self.data_path.resolve()) + os.sep)}"
            if read_only:
                options += ", READ_ONLY"
            con.execute(f"ATTACH {sql_literal('ducklake:postgres:' + self.catalog)} AS {ALIAS} ({options})")
            if not read_only:
                con.execute(f"ATTACH {sql_literal(self.catalog)} AS {CATALOG_ALIAS} (TYPE postgres)")
            con.execute(f"USE {ALIAS}")

        return self._connection(attach, "cannot open")

    def open_catalog(self) -> duckdb.DuckDBPyConnection:
        """A connection to the catalog's PostgreSQL database alone, for the leases and the
        checkpoints beside them: a database of its own, so its statements need not wait for
        the lake's transactions (one at a time in a process) to finish."""

        def attach(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"LOAD {sql_literal(str(_postgres_extension()))}")
            # An ingest's threads checkpoint at once: past the pool's 4 connections each
            # statement opened a PostgreSQL connection of its own.
            con.execute(f"SET pg_pool_max_connections = {_CATALOG_POOL}")
            con.execute(f"ATTACH {sql_literal(self.catalog)} AS {CATALOG_ALIAS} (TYPE postgres)")

        return self._connection(attach, "cannot open the catalog")

    def _connection(
        self, attach: Callable[[duckdb.DuckDBPyConnection], None], failure: str
    ) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that loads only the registry's extension files (never one fetched
        at run time), set up by `attach`; a failure is one line with the password scrubbed."""
        con = duckdb.connect()
        try:
            for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
                con.execute(f"SET {setting} = false")
            attach(con)
        except duckdb.Error as exc:
            con.close()
            first = scrub(str(exc)).splitlines()[0]
            raise ShipskipError(f"{self.describe()}: {failure}: {first}") from None
        return con

    # -- schema ----------------------------------------------------------------------

    def sync_schema(
        self, con: duckdb.DuckDBPyConnection, migrations: list[tuple[int, str, str]], now: datetime
    ) -> bool:
        """Bring the lake's tables and views to what the single file's migrations build; True
        when it changed anything.

        The migrations run on an in-memory DuckDB; its tables are created here without their
        keys and indexes (DuckLake has none), missing columns are added, and every view is
        replaced. A migration's data changes are not replayed: a new lake has no old rows.
        """
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
        todo = [(v, n) for v, n, _ in migrations if v not in done]
        if not todo:
            return False
        tables, views, seeds = _schema_of(migrations)
        have: dict[str, set[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?", [ALIAS]
        ).fetchall():
            have.setdefault(table, set()).add(column)
        # Not one transaction: DuckDB would abort it at the first view that waits for another.
        # Each step is safe to repeat, and the versions are recorded last.
        for table, columns in tables.items():
            if table not in have:
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(d for _, _, d in columns)})")
                if seeds.get(table):  # rows a migration put in a new table (model prices)
                    marks = ", ".join("?" * len(columns))
                    con.executemany(f"INSERT INTO {table} VALUES ({marks})", seeds[table])
                continue
            for name, data_type, _ in columns:
                if name not in have[table]:
                    # DuckLake adds a column only bare: no default, no NOT NULL.
                    con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {data_type}')
        _create_views(con, views)
        con.executemany("INSERT INTO schema_migrations VALUES (?, ?, ?)", [[v, n, now] for v, n in todo])
        return True

    # -- maintenance -----------------------------------------------------------------

    def maintain(self, con: duckdb.DuckDBPyConnection, keep_days: int) -> dict[str, int]:
        """The upkeep DuckLake never does on its own, in the order its CHECKPOINT runs it.

        Small rows sit inlined in the catalog, and each commit of a few rows writes its own small
        Parquet file: both are folded into larger files. Snapshots older than `keep_days` are
        expired, and files no snapshot needs any more and that were set aside longer ago than
        that are deleted. The store's history (old takes, reruns) is rows in its tables, not
        snapshots, so nothing a user sees is lost; only time travel past `keep_days` is.
        """
        lake = sql_literal(ALIAS)
        older = f"now() - to_days(CAST({int(keep_days)} AS INTEGER))"
        flushed = con.execute(f"CALL ducklake_flush_inlined_data({lake})").fetchall()
        merged = con.execute(f"CALL ducklake_merge_adjacent_files({lake})").fetchall()
        expired = con.execute(f"CALL ducklake_expire_snapshots({lake}, older_than => {older})").fetchall()
        deleted = con.execute(f"CALL ducklake_cleanup_old_files({lake}, older_than => {older})").fetchall()
        return {
            "inlined_rows_written_out": sum(int(r[2]) for r in flushed),
            "small_files_merged": sum(int(r[2]) for r in merged),
            "files_written": sum(int(r[3]) for r in merged),
            "snapshots_expired": len(expired),
            "old_files_deleted": len(deleted),
        }


def _schema_of(
    migrations: list[tuple[int, str, str]],
) -> tuple[dict[str, list[tuple[str, str, str]]], list[tuple[str, str]], dict[str, list[tuple]]]:
    """Tables (each column's name, type and definition, keys left out), views in creation
    order, and the rows the migrations put in tables, of a database built by the migrations."""
    with duckdb.connect() as con:
        for _, _, sql in migrations:
            con.execute(sql)
        tables: dict[str, list[tuple[str, str, str]]] = {}
        for table, column, data_type, nullable, default in con.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM duckdb_columns()"
            " WHERE NOT internal AND table_name IN (SELECT table_name FROM duckdb_tables())"
            " ORDER BY table_name, column_index"
        ).fetchall():
            definition = f'"{column}" {data_type}' + ("" if nullable else " NOT NULL")
            definition += f" DEFAULT {default}" if default is not None else ""
            tables.setdefault(table, []).append((column, data_type, definition))
        views = con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_oid"
        ).fetchall()
        seeds = {t: con.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    return tables, views, seeds


def _create_views(con: duckdb.DuckDBPyConnection, views: list[tuple[str, str]]) -> None:
    """Replace every view; one that reads a view not made yet waits for the next pass."""
    pending = [(name, re.sub(r"^CREATE VIEW", "CREATE OR REPLACE VIEW", sql)) for name, sql in views]
    while pending:
        left, error = [], None
        for name, sql in pending:
            try:
                con.execute(sql)
            except duckdb.CatalogException as exc:
                left.append((name, sql))
                error = exc
        if len(left) == len(pending):
            raise ShipskipError(f"cannot create the lake's views {[n for n, _ in left]}: {error}")
        pending = left


class LakeBackend(Backend):
    """The store's backend on a DuckLake: one kept connection for writing and one for reading
    (attaching costs 0.2 s; a cursor, nothing), the schema synced from the migrations when
    first opened, and each tool's lease in the PostgreSQL catalog."""

    def __init__(self, lake: Lake, lock_wait_s: float, query_timeout_s: float | None, lease_s: float) -> None:
        super().__init__(lock_wait_s, query_timeout_s, lease_s)
        self.lake = lake
        self._con: duckdb.DuckDBPyConnection | None = None
        self._reader_con: duckdb.DuckDBPyConnection | None = None
        self._catalog_con: duckdb.DuckDBPyConnection | None = None
        self._catalog_guard = threading.Lock()

    def exists(self) -> bool:
        return True  # a lake is made on first use, readers included

    def describe(self) -> str:
        return self.lake.describe()

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with backends._LOCK:
            con = (self._reader() if read_only else self._base()).cursor()
            try:
                con.execute(f"USE {ALIAS}")
                yield con
            finally:
                con.close()

    def _base(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = self.lake.open()
            try:
                self._sync(con)
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def _reader(self) -> duckdb.DuckDBPyConnection:
        if self._reader_con is None:
            self._reader_con = self._open_read_only()
        return self._reader_con

    def _open_read_only(self) -> duckdb.DuckDBPyConnection:
        self._base()  # made and migrated first: a read-only attach cannot
        return self.lake.open(read_only=True)

    @again_on_conflict
    def _sync(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.lake.sync_schema(con, migrate.migrations(), backends.now()):
            migrate.fill_previous(con)  # the one data change a migration made that a lake needs
        self.lake.ensure_leases(con)
        self.migrated = True

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A lake's readers already read a snapshot and block no one: a read-only connection
        of its own, whose settings a sandbox may lock."""
        with closing(self._open_read_only()) as con:
            yield con

    # -- leases ----------------------------------------------------------------------
    # Each on a cursor of the catalog's own connection, never behind the store's lock: a
    # process's threads keep checkpointing and claiming while one of them commits to the lake
    # (with them all on the lake's connection, an ingest's threads waited 0.3-0.6 s a statement).

    @contextmanager
    def _catalog(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.migrated:
            with backends._LOCK:  # the lease tables are made with the lake's schema
                self._base()
        with self._catalog_guard:
            if self._catalog_con is None:
                self._catalog_con = self.lake.open_catalog()
            con = self._catalog_con.cursor()
        try:
            yield con
        finally:
            con.close()

    def claim(self, slug: str) -> None:
        with self._catalog() as con:
            held = self.lake.claim(con, slug, OWNER, self.holder_alive)
        if held is not None:
            raise ToolBusy(slug, *held)

    def beat(self, slugs: list[str]) -> None:
        with self._catalog() as con:
            self.lake.beat(con, slugs, OWNER)

    def release(self, slug: str) -> None:
        with self._catalog() as con:
            self.lake.release(con, slug, OWNER)

    def sweep(self) -> list[str]:
        with self._catalog() as con:
            return self.lake.sweep(con, self.holder_alive)

    def finish(self, runs: list[tuple[str, str]]) -> None:
        with self._catalog() as con:
            self.lake.finish(con, runs, OWNER)

    def put_checkpoints(self, rows: list[tuple[str, str, str, str]]) -> bool:
        with self._catalog() as con:
            self.lake.put_checkpoints(con, rows, OWNER)
        return True

    def checkpoints(self, run_id: str) -> list[tuple[str, str]]:
        with self._catalog() as con:
            return self.lake.checkpoints(con, run_id)

    def forget_checkpoints(self, run_id: str, personas: list[str] | None = None) -> None:
        with self._catalog() as con:
            self.lake.forget_checkpoints(con, run_id, personas)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """One process at a time holds `key` (a voter on a tool, say): a lease in the catalog,
        as a review's is, waited for up to `lock_wait_s`. DuckLake lets two inserts into one
        table commit side by side, so a read-then-insert needs it to stay single."""
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            with self._catalog() as con:
                held = self.lake.claim(con, key, OWNER, self.holder_alive)
            if held is None:
                break
            if time.monotonic() > deadline:
                raise ToolBusy(key, *held)
            time.sleep(0.02)
        try:
            yield
        finally:
            self.release(key)

    @again_on_conflict
    def maintain(self, keep_days: int) -> dict[str, int] | None:
        with self.connect() as con:
            return self.lake.maintain(con, keep_days)
