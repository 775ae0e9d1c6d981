"""Evaluation rows in the store, beside `evaluate`, which makes them: a run's summary and items
(`save_eval`, `eval_items`), and the editors' labels with the answers the checklist gave
(`labelled_answers`, which calibration fits on)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from . import backends
from .backends import Backend, again_on_conflict
from .errors import ShipskipError


@again_on_conflict
def save_eval(
    db: Backend, reference: str, model: str, prompt_hash: str, samples: int, summary: dict, results: list
) -> str:
    eval_id = uuid.uuid4().hex
    with db.transaction() as con:
        con.execute(
            "INSERT INTO eval_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [eval_id, reference, model, prompt_hash, samples, backends.now(), json.dumps(summary)],
        )
        for r in results:
            row = {"eval_id": eval_id, **r.model_dump(exclude={"criteria"})}
            row["criteria"] = json.dumps([c.model_dump() for c in r.criteria]) if r.criteria else None
            con.execute(
                f"INSERT INTO eval_items ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
    return eval_id


def eval_items(db: Backend, eval_id: str) -> list[dict[str, Any]]:
    """The stored rows of one evaluation (a prefix of its id is enough), criteria parsed."""
    rows = db.query(
        "SELECT * EXCLUDE (eval_id) FROM eval_items WHERE eval_id = "
        "(SELECT min(eval_id) FROM eval_runs WHERE starts_with(eval_id, ?))",
        [eval_id],
    )
    if not rows:
        raise ShipskipError(f"no stored evaluation '{eval_id}'")
    for r in rows:
        r["criteria"] = json.loads(r["criteria"]) if r["criteria"] else []
    return rows


def labelled_answers(db: Backend, model: str) -> list[dict[str, Any]]:
    """The latest editor's label on each persona whose labelled take the checklist scored with
    `model`, with that take's stored answers (criteria, relevance), prompt version and hash,
    and whether its answers were corrected as an uncalibrated model's."""
    return db.query(
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
