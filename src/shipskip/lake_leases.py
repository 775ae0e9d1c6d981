"""The PostgreSQL half of a lake: the lease a process holds on each tool it reviews and its
takes' checkpoints, in plain PostgreSQL tables beside the DuckLake catalog. DuckLake has no
primary keys, so which process may write a tool, and what a killed one had finished, are
decided here, one PostgreSQL statement at a time. `store_lake.Lake` is made of this and the
lake itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

CATALOG_ALIAS = "shipskip_pg"  # the catalog database, attached by its PostgreSQL extension
_LEASES = "shipskip_tool_leases"
_CHECKPOINTS = "shipskip_take_checkpoints"
# Lease times are UTC without a zone, as every time the store keeps.
_PG_NOW = "(now() AT TIME ZONE 'UTC')"


def sql_literal(value: str) -> str:
    """A text as an SQL string literal, for the statements PostgreSQL runs itself (which take no
    parameters through `postgres_execute`)."""
    return "'" + value.replace("'", "''") + "'"


class LeaseTables:
    """Leases and checkpoints, on a connection that has the catalog attached as `CATALOG_ALIAS`."""

    # -- leases ----------------------------------------------------------------------

    def ensure_leases(self, con: duckdb.DuckDBPyConnection) -> None:
        self._execute(
            con,
            f"CREATE TABLE IF NOT EXISTS {_LEASES} (slug text PRIMARY KEY, owner text NOT NULL,"
            " heartbeat_at timestamp NOT NULL)",
        )
        self._execute(
            con,
            f"CREATE TABLE IF NOT EXISTS {_CHECKPOINTS} (run_id text NOT NULL, persona text NOT NULL,"
            " slug text NOT NULL, payload text NOT NULL, created_at timestamp NOT NULL,"
            " PRIMARY KEY (run_id, persona))",
        )

    # -- checkpoints -----------------------------------------------------------------
    # A checkpoint in a lake table cost a DuckLake commit (a delete file, a data file and
    # several catalog statements) and then a lease beat: 40 ms of the 68 a persona's take cost.
    # Beside the leases it is one PostgreSQL statement, committed on its own as soon as it
    # returns (so a SIGKILL after it loses nothing), that also renews the tools' leases.

    def put_checkpoints(
        self, con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str, str]], owner: str
    ) -> None:
        latest = {
            (run_id, persona): (run_id, slug, persona, payload) for run_id, slug, persona, payload in rows
        }
        values = ", ".join(
            f"({sql_literal(r)}, {sql_literal(p)}, {sql_literal(s)}, {sql_literal(j)}, {_PG_NOW})"
            for r, s, p, j in latest.values()
        )
        slugs = ", ".join(sorted({sql_literal(s) for _, s, _, _ in latest.values()}))
        self._execute(
            con,
            f"WITH kept AS (INSERT INTO {_CHECKPOINTS} (run_id, persona, slug, payload, created_at)"
            f" VALUES {values} ON CONFLICT (run_id, persona) DO UPDATE SET payload = excluded.payload,"
            " created_at = excluded.created_at RETURNING 1)"
            f" UPDATE {_LEASES} SET heartbeat_at = {_PG_NOW} WHERE slug IN ({slugs})"
            f" AND owner = {sql_literal(owner)}",
        )

    def checkpoints(self, con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[str, str]]:
        rows = con.execute(
            f"SELECT persona, payload FROM postgres_query('{CATALOG_ALIAS}', ?)",
            [f"SELECT persona, payload FROM {_CHECKPOINTS} WHERE run_id = {sql_literal(run_id)}"],
        ).fetchall()
        return [(persona, payload) for persona, payload in rows]

    def forget_checkpoints(
        self, con: duckdb.DuckDBPyConnection, run_id: str, personas: list[str] | None
    ) -> None:
        if personas == []:
            return
        which = f" AND persona IN ({', '.join(map(sql_literal, personas))})" if personas else ""
        self._execute(con, f"DELETE FROM {_CHECKPOINTS} WHERE run_id = {sql_literal(run_id)}{which}")

    def finish(self, con: duckdb.DuckDBPyConnection, runs: list[tuple[str, str]], owner: str) -> None:
        """Committed runs (run id, slug): forget their checkpoints and give up their leases, in
        one statement for them all."""
        ids = ", ".join(sql_literal(run_id) for run_id, _ in runs)
        slugs = ", ".join(sql_literal(slug) for _, slug in runs)
        self._execute(
            con,
            f"WITH gone AS (DELETE FROM {_CHECKPOINTS} WHERE run_id IN ({ids}) RETURNING 1)"
            f" DELETE FROM {_LEASES} WHERE slug IN ({slugs}) AND owner = {sql_literal(owner)}",
        )

    def claim(
        self, con: duckdb.DuckDBPyConnection, slug: str, owner: str, alive: Callable[[str, datetime], bool]
    ) -> tuple[str, datetime] | None:
        """Take the tool's lease for `owner`: None when it is ours now, else (holder, last seen)
        of the live process that holds it. A holder that is gone is replaced in one statement
        that only succeeds while the row still names it, so two takers cannot both win."""
        self._execute(
            con,
            f"INSERT INTO {_LEASES} VALUES ({sql_literal(slug)}, {sql_literal(owner)}, {_PG_NOW})"
            f" ON CONFLICT (slug) DO UPDATE SET heartbeat_at = {_PG_NOW}"
            f" WHERE {_LEASES}.owner = {sql_literal(owner)}",
        )
        holder = self._holder(con, slug)
        if holder is None or holder[0] == owner:
            return None if holder else self.claim(con, slug, owner, alive)
        if alive(*holder):
            return holder
        self._execute(
            con,
            f"UPDATE {_LEASES} SET owner = {sql_literal(owner)}, heartbeat_at = {_PG_NOW}"
            f" WHERE slug = {sql_literal(slug)} AND owner = {sql_literal(holder[0])}",
        )
        after = self._holder(con, slug)
        return None if after and after[0] == owner else after or (holder[0], holder[1])

    def beat(self, con: duckdb.DuckDBPyConnection, slugs: list[str], owner: str) -> None:
        """Renew the leases `owner` holds on these tools, in one statement."""
        self._execute(
            con,
            f"UPDATE {_LEASES} SET heartbeat_at = {_PG_NOW}"
            f" WHERE slug IN ({', '.join(map(sql_literal, slugs))}) AND owner = {sql_literal(owner)}",
        )

    def release(self, con: duckdb.DuckDBPyConnection, slug: str, owner: str) -> None:
        self._execute(
            con, f"DELETE FROM {_LEASES} WHERE slug = {sql_literal(slug)} AND owner = {sql_literal(owner)}"
        )

    def sweep(self, con: duckdb.DuckDBPyConnection, alive: Callable[[str, datetime], bool]) -> list[str]:
        """Drop the leases of holders that are gone. A claim would take such a lease over, but
        a process killed between committing a review and releasing its lease leaves one on a
        tool that is reviewed now and so never claimed again. Each delete names the dead
        holder, so a lease someone took over meanwhile stays."""
        rows = con.execute(
            f"SELECT slug, owner, heartbeat_at FROM postgres_query('{CATALOG_ALIAS}', ?)",
            [f"SELECT slug, owner, heartbeat_at FROM {_LEASES}"],
        ).fetchall()
        gone = [(slug, owner) for slug, owner, beat in rows if not alive(owner, beat)]
        for slug, owner in gone:
            self.release(con, slug, owner)
        return [slug for slug, _ in gone]

    def _holder(self, con: duckdb.DuckDBPyConnection, slug: str) -> tuple[str, datetime] | None:
        row = con.execute(
            f"SELECT owner, heartbeat_at FROM postgres_query('{CATALOG_ALIAS}', ?)",
            [f"SELECT owner, heartbeat_at FROM {_LEASES} WHERE slug = {sql_literal(slug)}"],
        ).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _execute(con: duckdb.DuckDBPyConnection, statement: str) -> None:
        # One statement run by PostgreSQL itself, committed on its own: the lease's atomicity
        # is PostgreSQL's, not a read-then-write through DuckDB. The extension runs it at
        # REPEATABLE READ, where two processes writing the same lease row at once get "could
        # not serialize access" for the loser: nothing was written, so it is simply run again.
        for attempt in Retrying(
            retry=retry_if_exception(lambda e: "could not serialize access" in str(e)),
            wait=wait_random(0.01, 0.1),
            stop=stop_after_attempt(50),
            reraise=True,
        ):
            with attempt:
                con.execute(f"CALL postgres_execute('{CATALOG_ALIAS}', ?)", [statement])
