"""The numbered migrations (`src/shipskip/migrations/NNN_name.sql`) and the runner that applies
them to the single file, apart from the store (simonw/llm's `migrate(db)` is the model). A lake
derives its tables and views from the same migrations (`store_lake.Lake.sync_schema`)."""

from __future__ import annotations

import re
from datetime import datetime
from importlib import resources

import duckdb

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """Every migration as (version, file name, SQL), in order."""
    found = []
    for entry in resources.files("shipskip.migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """Apply the migrations this database has not had yet, each in its own transaction."""
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
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now])
        except BaseException:
            con.rollback()
            raise
        con.commit()


def fill_previous(con: duckdb.DuckDBPyConnection) -> None:
    """Give each take that lacks them its previous version's score, verdict, model and prompt
    version (loaded takes; a lake's takes from before migration 014, which made the columns
    and filled them on the file)."""
    con.execute(
        "UPDATE takes SET prev_score = p.score, prev_verdict = p.verdict, prev_model = p.model,"
        " prev_prompt_version = p.prompt_version FROM takes p"
        " WHERE p.slug = takes.slug AND p.persona = takes.persona AND p.version = takes.version - 1"
        " AND takes.version > 1 AND takes.prev_model IS NULL"
    )
