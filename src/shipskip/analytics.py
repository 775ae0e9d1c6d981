"""Analyst queries: read-only SQL, score trends and Parquet export. The trends' charts are drawn
by `charts`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from .charts import TrendPoint
from .errors import ShipskipError, UnsafeWrite
from .store import Store
from .store_export import EXPORT_TABLES
from .writes import locate, staging, write_text


def check_read_only(sql: str) -> str:
    """Exactly one SELECT (WITH, VALUES and the like parse as SELECT); anything else is refused."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ShipskipError(f"query: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ShipskipError(f"query: give exactly one statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ShipskipError(f"query: only SELECT queries are allowed here, not {kind.name}")
    return sql


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    more: bool = False  # rows beyond the limit exist and were not fetched


def run_sql(store: Store, sql: str, limit: int | None = None) -> Result:
    """Rows of a read-only query; with `limit`, at most that many are fetched (a huge result is
    never pulled into memory to show its first rows)."""
    check_read_only(sql)
    with store.sandbox() as con:
        try:
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description or []]
            if limit is None:
                return Result(columns=columns, rows=cur.fetchall())
            rows = cur.fetchmany(limit + 1)
            return Result(columns=columns, rows=rows[:limit], more=len(rows) > limit)
        except duckdb.Error as exc:
            raise ShipskipError(f"query: {str(exc).splitlines()[0]}") from None


def write_result(store: Store, sql: str, fmt: str, out: Path, roots: Sequence[Path] | None = None) -> Path:
    """csv and json from fetched rows; parquet through DuckDB's own writer. The file lands
    inside one of `roots` (default: the folder `out` names), never through a link out of it."""
    check_read_only(sql)
    root, _ = locate(out, roots or [out.parent])
    if fmt == "parquet":
        # DuckDB writes a file of its own naming: a private folder beside `out`, then renamed.
        with staging(root, out.parent) as stage, store.sandbox([str(stage / out.name)]) as con:
            try:
                con.sql(sql).write_parquet(str(stage / out.name))
            except duckdb.Error as exc:
                raise ShipskipError(f"query: {str(exc).splitlines()[0]}") from None
        return out
    write_text(root, out, format_result(run_sql(store, sql), fmt))
    return out


def format_result(res: Result, fmt: str) -> str:
    """A result as CSV (with a header row) or as a JSON list of objects."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(res.columns)
        w.writerows(res.rows)
        return buf.getvalue()
    if fmt == "json":
        records = [dict(zip(res.columns, r, strict=True)) for r in res.rows]
        return json.dumps(records, default=str, indent=1) + "\n"
    if fmt == "markdown":

        def cell(v: object) -> str:
            return "" if v is None else " ".join(str(v).split()).replace("|", "\\|")

        lines = ["| " + " | ".join(res.columns) + " |", "|" + "---|" * len(res.columns)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in res.rows]
        return "\n".join(lines) + "\n"
    raise ShipskipError(f"format '{fmt}' must be csv, json, markdown or parquet")


# Views analysts read, and the evaluation tables, exported beside the tables (views/ and eval/).
EXPORT_VIEWS = (
    "committed_takes", "current_takes", "panel_verdicts", "takes_by_week", "takes_enriched", "persona_weekly",
    "persona_category", "persona_model_weekly", "score_distribution", "persona_disagreement",
    "take_changes", "take_criteria", "run_costs", "model_costs",
    "current_takes_by_week", "current_takes_enriched", "persona_weekly_all_versions",
    "persona_category_all_versions", "persona_model_weekly_all_versions",
)  # fmt: skip
EXPORT_EVAL = ("eval_runs", "eval_items")


def export(store: Store, folder: Path, overwrite: bool = False) -> list[Path]:
    """One Parquet file per table, per analysts' view (views/) and per evaluation table (eval/).

    Everything lands inside `folder`, a new or empty folder unless `overwrite` (which replaces
    the export's own files and leaves anything else there alone); no link inside it is written
    through. The files are written to a private folder inside it first and moved into place
    only once all of them are done, so a failed export replaces nothing."""
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise UnsafeWrite(folder, "--to must be a folder, and this is not one")
        if not overwrite and any(folder.iterdir()):
            raise UnsafeWrite(
                folder, "--to folder is not empty; give --overwrite to replace the export in it"
            )
    written = []
    with store.analysing() as con, staging(folder) as stage:
        for sub, names in (("", EXPORT_TABLES), ("views", EXPORT_VIEWS), ("eval", EXPORT_EVAL)):
            (stage / sub).mkdir(exist_ok=True)
            for name in names:
                con.table(name).write_parquet(str(stage / sub / f"{name}.parquet"))
                written.append(folder / sub / f"{name}.parquet")
    return written


# -- trends ------------------------------------------------------------------------------


def trend_points(
    store: Store,
    persona: str | None = None,
    category: str | None = None,
    since: date | None = None,
    all_versions: bool = False,
) -> list[TrendPoint]:
    """Per persona and week, the current takes made that week (one per tool and persona); with
    `all_versions`, every version, so a take rerun three times counts four times."""
    # Only a category filter needs the category's join with every card version.
    source = "takes_enriched" if category else "takes_by_week"
    sql = (
        "SELECT persona, week, count(score) AS scored, avg(score) AS mean_score,"
        " count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0) AS ship_rate,"
        " count(*) FILTER (WHERE verdict IS NOT NULL AND NOT coalesce(counted, true)) AS not_counted"
        f" FROM {source if all_versions else 'current_' + source} WHERE true"
    )
    params: list[Any] = []
    if persona:
        sql += " AND persona = ?"
        params.append(persona.lower())
    if category:
        sql += " AND lower(category) = lower(?)"
        params.append(category)
    if since:
        sql += " AND created_at >= ?"
        params.append(since)
    rows = store.query(sql + " GROUP BY persona, week ORDER BY persona, week", params)
    return [TrendPoint(**r) for r in rows]


def score_distribution(store: Store, persona: str | None = None) -> dict[str, list[int]]:
    """Per persona, its current takes counted in ten buckets of ten points (90 holds 90-100)."""
    sql = "SELECT persona, bucket, takes FROM score_distribution"
    params: list[Any] = []
    if persona:
        sql += " WHERE persona = ?"
        params.append(persona.lower())
    out: dict[str, list[int]] = {}
    for r in store.query(sql, params):
        out.setdefault(r["persona"], [0] * 10)[int(r["bucket"]) // 10] = int(r["takes"])
    return dict(sorted(out.items()))


def trend_summary(points: list[TrendPoint]) -> list[dict[str, Any]]:
    """Per persona: weeks seen, overall mean, first and last weekly mean, and ship rate."""
    out = []
    for persona in sorted({p.persona for p in points}):
        pts = [p for p in points if p.persona == persona and p.mean_score is not None]
        means = [p.mean_score for p in pts if p.mean_score is not None]  # the same points, typed
        if not pts:
            continue
        total = sum(p.scored for p in pts)
        mean = sum(m * p.scored for m, p in zip(means, pts, strict=True)) / total
        rate = sum((p.ship_rate or 0) * p.scored for p in pts) / total
        out.append({
            "persona": persona, "weeks": len(pts), "scored": total, "mean_score": round(mean, 1),
            "first_week_mean": round(means[0], 1), "last_week_mean": round(means[-1], 1),
            "ship_rate": round(rate, 3), "not_counted": sum(p.not_counted for p in pts),
        })  # fmt: skip
    return out
