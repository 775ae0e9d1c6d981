"""The store's reads, each a plain function of a backend (`backends.Backend`): takes, tools,
history, votes, the site's bulk rows, prices, batches, labels, the catalogue and the digest's
week. The writes are in `ledger` (reviews) and `store_writes` (everything else)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import duckdb
from pydantic import ValidationError

from .backends import Backend
from .errors import StoredRowError, describe_validation_error
from .models import SHIP_THRESHOLD, CommunityVotes, EditorLabel, Take, ToolCard, is_web_address
from .roster import persona_key

# Take fields stored in a column of the same name (`text` in the `take` column: its alias).
TAKE_FIELDS = {
    "persona", "verdict", "score", "text", "abstain_reason", "error", "model", "prompt_version",
    "prompt_hash", "temperature", "attempts", "latency_ms", "suspicious", "rerun_reason", "clean_score",
    "grounded", "samples", "score_spread", "verdict_flips", "scoring", "relevance",
    "composed", "calibration", "uncalibrated", "counted", "not_counted_reason", "p_ship",
}  # fmt: skip

_TAKE_COLUMNS = [Take.model_fields[f].serialization_alias or f for f in sorted(TAKE_FIELDS)]

PRICE_COLUMNS = (
    "model", "usd_per_mtok_prompt", "usd_per_mtok_cached", "usd_per_mtok_completion", "as_of",
)  # fmt: skip


def take_from_row(row: dict[str, Any], slug: str = "") -> Take:
    """A `takes` (or `current_takes`) row as a Take; StoredRowError when it fails validation."""
    try:
        return _validate_take_row(row)
    except ValidationError as exc:
        raise StoredRowError("takes", f"{slug}/{row['persona']}", *describe_validation_error(exc)) from None


def _validate_take_row(row: dict[str, Any]) -> Take:
    return Take.model_validate(
        {
            **{c: row[c] for c in _TAKE_COLUMNS},
            "counted": row["counted"] is not False,  # a take from before migration 020 counted
            # A dict, validated with the take in one call (a site build reads every take).
            "usage": {
                "prompt_tokens": row["prompt_tokens"],
                "completion_tokens": row["completion_tokens"],
                "cached_tokens": row["cached_tokens"],
                # NULL on a lake's takes from before migration 023.
                "batch_prompt_tokens": row.get("batch_prompt_tokens") or 0,
                "batch_completion_tokens": row.get("batch_completion_tokens") or 0,
            },
            "criteria": json.loads(row["criteria"]) if row["criteria"] else [],
        }
    )


# -- takes and tools -----------------------------------------------------------------


def current(con: duckdb.DuckDBPyConnection, slug: str) -> list[Take]:
    """A tool's current takes in persona order, on a connection the caller holds (a commit's)."""
    cur = con.execute("SELECT * FROM current_takes WHERE slug = ?", [slug])
    cols = [d[0] for d in cur.description or []]
    takes = [take_from_row(dict(zip(cols, r, strict=True)), slug) for r in cur.fetchall()]
    return sorted(takes, key=lambda t: persona_key(t.persona))


def current_takes(db: Backend, slug: str) -> list[Take]:
    with db.connect(read_only=True) as con:
        return current(con, slug)


def reviewed_among(db: Backend, cards: list[ToolCard]) -> set[str]:
    """Slugs of the cards whose exact content a committed review already read: one query
    for a whole feed, not one connection per entry (15 ms each; a 10,000-entry feed)."""
    if not cards or not db.exists():
        return set()
    wanted = [(c.slug, c.content_hash()) for c in cards]
    with db.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT r.slug FROM runs r JOIN (SELECT unnest(?) AS slug, unnest(?) AS h) w"
            " ON r.slug = w.slug AND r.content_hash = w.h"
            " WHERE r.kind = 'review' AND r.status = 'complete'",
            [[s for s, _ in wanted], [h for _, h in wanted]],
        ).fetchall()
    return {r[0] for r in rows}


def tool(db: Backend, slug: str) -> ToolCard | None:
    rows = db.query(
        "SELECT * EXCLUDE (content_hash, first_seen, updated_at) FROM tools WHERE slug = ?", [slug]
    )
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


def similar(db: Backend, slug: str, category: str, limit: int = 5) -> list[str]:
    """Other reviewed tools in the same (normalised) category, most recently updated first."""
    rows = db.query(
        "SELECT slug FROM tools WHERE category = ? AND slug <> ? ORDER BY updated_at DESC, slug LIMIT ?",
        [category, slug, limit],
    )
    return [r["slug"] for r in rows]


def reviewer_record(db: Backend, persona: str, recent: int = 20) -> tuple[list[dict], list[dict]]:
    """A persona's latest current takes (tool, verdict, score, when) and its figures per category."""
    takes = db.query(
        "SELECT t.slug, tools.name, tools.category, t.verdict, t.score, t.created_at, t.suspicious,"
        " t.model, t.uncalibrated"
        " FROM current_takes t JOIN tools USING (slug) WHERE t.persona = ?"
        " ORDER BY t.created_at DESC, t.slug LIMIT ?",
        [persona, recent],
    )
    categories = db.query(
        "SELECT category, takes, scored, mean_score, ship_rate FROM persona_category"
        " WHERE persona = ? ORDER BY takes DESC, category",
        [persona],
    )
    return takes, categories


def reviewed_at(db: Backend, slug: str) -> datetime | None:
    rows = db.query("SELECT max(created_at) AS at FROM committed_takes WHERE slug = ?", [slug])
    return rows[0]["at"] if rows else None


def history(db: Backend, slug: str, persona: str | None = None) -> list[dict[str, Any]]:
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
    return db.query(sql + " ORDER BY persona, created_at", params)


def current_models(db: Backend) -> list[dict[str, Any]]:
    """Each model behind a current take, and whether any of its takes was uncalibrated."""
    return db.query(
        "SELECT model, bool_or(coalesce(uncalibrated, false)) AS uncalibrated FROM current_takes"
        " WHERE model IS NOT NULL GROUP BY model ORDER BY model"
    )


def completed_between(db: Backend, start: date, end: date) -> list[str]:
    """Tools whose review (or rerun) completed in [start, end), by their first such time: a
    digest's week."""
    rows = db.query(
        "SELECT slug FROM runs WHERE status = 'complete' AND finished_at >= ? AND finished_at < ?"
        " GROUP BY slug ORDER BY min(finished_at)",
        [start, end],
    )
    return [r["slug"] for r in rows]


# -- readers' votes and marks ----------------------------------------------------------


def votes(db: Backend, slug: str) -> CommunityVotes:
    rows = db.query(
        "SELECT count(*) FILTER (WHERE vote = 'ship') AS ship,"
        " count(*) FILTER (WHERE vote = 'skip') AS skip FROM votes WHERE slug = ?",
        [slug],
    )
    return CommunityVotes(**rows[0])


def voter_choice(db: Backend, slug: str, voter: str) -> str | None:
    rows = db.query("SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter])
    return rows[0]["vote"] if rows else None


def helpful_counts(db: Backend, slug: str) -> dict[str, int]:
    """How many readers marked each persona's take on a tool helpful."""
    rows = db.query(
        "SELECT persona, count(*) AS n FROM helpful_marks WHERE slug = ? GROUP BY persona", [slug]
    )
    return {r["persona"]: r["n"] for r in rows}


# -- the site ------------------------------------------------------------------------


def site_rows(db: Backend) -> dict[str, list[dict[str, Any]]]:
    """Everything the static site shows, in a few bulk reads on one connection (a read per
    tool cost 5 queries a tool: a minute for 10,000). Keys: `tools` (card columns),
    `takes` (current takes, as rows), `labels` (editors' current labels), `votes`,
    `reviewed` (latest take per tool), `updates` (the last two committed takes of each persona
    taken more than once, newest first, with the run's reason) and `runs` (each completed
    review's tool and time)."""
    with db.reading():
        return {
            "tools": db.query(
                "SELECT * EXCLUDE (content_hash, first_seen, updated_at) FROM tools ORDER BY slug"
            ),
            "takes": db.query("SELECT * FROM current_takes"),
            "labels": db.query(
                "SELECT slug, persona, editor, verdict, score, reason, created_at FROM current_labels"
                " ORDER BY slug, persona, created_at, label_id"
            ),
            "votes": db.query(
                "SELECT slug, count(*) FILTER (WHERE vote = 'ship') AS ship,"
                " count(*) FILTER (WHERE vote = 'skip') AS skip FROM votes GROUP BY slug"
            ),
            "reviewed": db.query("SELECT slug, max(created_at) AS at FROM committed_takes GROUP BY slug"),
            "updates": db.query(
                "SELECT slug, persona, created_at, reason, score, verdict, take, abstain_reason, rn"
                " FROM ("
                " SELECT t.slug, t.persona, t.created_at, r.reason, t.score, t.verdict, t.take,"
                " t.abstain_reason,"
                " row_number() OVER (PARTITION BY t.slug, t.persona ORDER BY t.created_at DESC) AS rn,"
                " count(*) OVER (PARTITION BY t.slug, t.persona) AS n"
                " FROM committed_takes t JOIN runs r USING (run_id))"
                " WHERE n >= 2 AND rn <= 2 ORDER BY slug, persona, rn"
            ),
            "runs": db.query(
                "SELECT slug, finished_at FROM runs WHERE status = 'complete' AND finished_at IS NOT NULL"
                " ORDER BY finished_at, slug"
            ),
        }


def page_digests(db: Backend, out_dir: str) -> dict[str, str]:
    """Each published page of the site in `out_dir`: its path there and its inputs' digest."""
    if not db.exists():
        return {}
    with db.connect(read_only=True) as con:  # pairs, not a dict a row: a big site has 75,000
        rows = con.execute("SELECT path, digest FROM page_digests WHERE out_dir = ?", [out_dir])
        return dict(rows.fetchall())


# -- prices and batches --------------------------------------------------------------


def prices(db: Backend) -> list[dict[str, Any]]:
    """model_prices, by model: the prices the cost views read."""
    return db.query(f"SELECT {', '.join(PRICE_COLUMNS)} FROM model_prices ORDER BY model")


def open_batches(db: Backend) -> list[dict[str, Any]]:
    """Batch jobs not collected yet, oldest first."""
    return db.query(
        "SELECT batch_key, batch_id, base_url, model, requests, status, created_at FROM llm_batches"
        " WHERE collected_at IS NULL ORDER BY created_at"
    )


def batch_requests(db: Backend, slugs: list[str]) -> dict[str, dict[str, Any]]:
    """Every batched question of these tools, by custom_id."""
    if not slugs:
        return {}
    marks = ", ".join("?" * len(slugs))
    rows = db.query(
        "SELECT custom_id, batch_key, slug, state, p_yes, source, prompt_tokens, completion_tokens,"
        f" model, error FROM batch_requests WHERE slug IN ({marks})",
        list(slugs),
    )
    return {r["custom_id"]: r for r in rows}


# -- editors' labels and the catalogue -------------------------------------------------


def labels(db: Backend, slug: str, persona: str | None = None, history: bool = False) -> list[EditorLabel]:
    """Each editor's current label on a tool's personas (every label ever, oldest first, with
    `history`)."""
    where = "slug = ?" + (" AND persona = ?" if persona else "")
    rows = db.query(
        "SELECT slug, persona, editor, verdict, score, reason, created_at"
        f" FROM {'labels' if history else 'current_labels'} WHERE {where}"
        " ORDER BY persona, created_at, label_id",
        [slug, persona] if persona else [slug],
    )
    return [EditorLabel.model_validate(r) for r in rows]


def label_queue(db: Backend, limit: int = 20) -> list[dict[str, Any]]:
    """Tools whose panel verdict is least certain, for editors to label first: the personas most
    evenly split (ship % nearest 50) first, then the scores nearest the ship line. A tool
    every one of whose personas already has an editor's label is left out."""
    return db.query(
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


def catalogue(db: Backend) -> list[dict[str, Any]]:
    """Every reviewed tool with its day (launched, or the day first reviewed) and its
    panel's ship %, for the catalogue facts (`shipskip.catalogue`), which keep only the
    tools before a card's own day."""
    return db.query(
        "SELECT t.slug, t.name, t.tagline, t.description, t.category,"
        " coalesce(t.launched, CAST(t.first_seen AS DATE)) AS day, v.ship_pct"
        " FROM tools t LEFT JOIN panel_verdicts v USING (slug) ORDER BY day, t.slug"
    )
