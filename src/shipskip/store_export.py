"""Parquet in and out of the store, beside `analytics.export`, which writes the tables named
here: `load_parquet` bulk-loads an export (or generated rows) through DuckDB's reader."""

from __future__ import annotations

from pathlib import Path

import duckdb

from . import migrate
from .backends import Backend, again_on_conflict, count
from .errors import ShipskipError
from .ledger import verdict_follows

# Tables an export writes and an import may load (views are exported by analytics).
EXPORT_TABLES = ("tools", "tool_versions", "runs", "takes", "failed_reruns", "votes", "model_prices")


@again_on_conflict
def load_parquet(db: Backend, table: str, path: Path) -> int:
    """Bulk-load rows (an export, or generated data) through DuckDB's Parquet reader; how many
    rows the table gained."""
    if table not in EXPORT_TABLES:
        raise ShipskipError(f"cannot load into '{table}'")
    with db.transaction() as con:
        if table == "takes":
            # At most a few hundred distinct pairs, however many takes the file holds.
            pairs = con.execute("SELECT DISTINCT verdict, score FROM read_parquet(?)", [str(path)])
            bad = [(v, n) for v, n in pairs.fetchall() if not verdict_follows(v, n)]
            if bad:
                v, n = bad[0]
                raise ShipskipError(f"{path}: verdict: '{v}' does not follow score {n}")
        before = count(con, f"SELECT count(*) FROM {table}")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(path)])
        if table in ("takes", "runs"):
            mark_current(con)  # loaded takes (or their runs) may change which is current
        if table == "takes":
            # Views read every take as committed (migration 016): takes come with their runs.
            orphans = count(
                con,
                "SELECT count(*) FROM takes t WHERE NOT EXISTS (SELECT 1 FROM runs r"
                " WHERE r.run_id = t.run_id AND r.status = 'complete')",
            )
            if orphans:
                raise ShipskipError(
                    f"{path}: run_id: {orphans} takes belong to no completed run; load their runs first"
                )
            migrate.fill_previous(con)  # an export from before migration 014 lacks them
        return count(con, f"SELECT count(*) FROM {table}") - before


def mark_current(con: duckdb.DuckDBPyConnection) -> None:
    """Mark, from scratch, the latest committed take of each tool and persona as current."""
    con.execute(
        "UPDATE takes SET is_current = take_id IN ("
        "  SELECT take_id FROM (SELECT t.take_id, row_number() OVER ("
        "    PARTITION BY t.slug, t.persona ORDER BY t.version DESC) AS rn"
        "  FROM takes t JOIN runs r USING (run_id) WHERE r.status = 'complete') WHERE rn = 1)"
    )
