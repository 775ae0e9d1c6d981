"""Editors teach the panel: their own call on a persona, the queue of tools to label first, and
the labels as training data for a model's calibration. Plain functions over the store; the CLI
and the `label-seat` flow call them."""

from __future__ import annotations

import getpass
import json
import re
from typing import Any

from . import calibrations
from .errors import BadParameter, UnknownTool
from .models import SHIP_THRESHOLD, Criterion, EditorLabel, card_text, verdict_for
from .personas import check_persona
from .settings import Settings
from .store import Store
from .untrusted import MIN_REASON, REASON_TOO_SHORT

VERDICTS = ("ship", "skip", "abstain")
_EDITOR = re.compile(r"[\w.@+-]{1,64}")


def record_label(
    tool: str,
    persona: str,
    verdict: str,
    reason: str,
    store: Store,
    settings: Settings,
    *,
    score: int | None = None,
    editor: str | None = None,
) -> EditorLabel:
    """Check and store an editor's call on a persona; the editor's earlier call there stays as
    history. Checked before anything is stored: a persona on the panel, a reviewed tool, a call, a
    score that agrees with the call, a reason and a name. Raises a typed ShipskipError naming
    the first bad input."""
    check_persona(settings.prompts_dir, persona)
    if verdict not in VERDICTS:
        raise BadParameter("verdict", f"'{card_text(verdict)[:20]}' is not one of {', '.join(VERDICTS)}")
    if score is not None:
        if not 0 <= score <= 100:
            raise BadParameter("--score", f"{score} is outside 0-100")
        if verdict == "abstain":
            raise BadParameter("--score", "an abstention has no score; leave it out")
        # The same rule as a take's: ship at the line or above, skip below it.
        if verdict != verdict_for(score):
            side = f"{SHIP_THRESHOLD} or more" if verdict == "ship" else f"below {SHIP_THRESHOLD}"
            raise BadParameter("--score", f"{score} does not fit '{verdict}' ({side})")
    text = card_text(reason)
    if len(text) < MIN_REASON:
        raise BadParameter("--reason", REASON_TOO_SHORT)
    who = card_text(editor if editor is not None else getpass.getuser())
    if not _EDITOR.fullmatch(who):
        raise BadParameter("--editor", f"'{who[:64]}' must be 1-64 letters, digits or . @ + - _")
    if store.tool(tool) is None:
        raise UnknownTool(tool)
    label = EditorLabel(slug=tool, persona=persona, editor=who, verdict=verdict, score=score, reason=text)  # type: ignore[arg-type]
    store.add_label(label)
    return label


def queue(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The tools to label first: least certain verdict first (see `Store.label_queue`)."""
    if limit < 1:
        raise BadParameter("--limit", "must be 1 or more")
    return store.label_queue(limit)


def raw_answer(p: float | None, bias: float | None) -> float | None:
    """The model's own P(yes) behind one corrected by `calibrations.corrected` (the correction
    multiplies the odds by (1 - b) / b, so this multiplies them back)."""
    if p is None or bias is None:
        return p
    b = min(max(bias, calibrations.BIAS_FLOOR), 1 - calibrations.BIAS_FLOOR)
    q = min(max(p, 1e-6), 1 - 1e-6)
    odds = q / (1 - q) * b / (1 - b)
    return round(odds / (1 + odds), 4)


def labelled_observations(
    store: Store, model: str, versions: dict[str, str], biases: dict[tuple[str, str], dict[str, float]]
) -> list[dict[str, Any]]:
    """Editors' labels on personas the checklist scored with `model` under the persona prompt
    versions in use (`versions`: persona to version), each with the stored answers of the take
    it judged: rows of slug, persona, ref_verdict, ref_score, relevance and criteria, in the
    shape of an evaluation's results. A take scored while the model was uncalibrated stored its
    answers corrected by the model's content-free bias; they are turned back into the model's
    own answers with that bias (`biases`: by persona and prompt hash), which the reference's
    answers are, and left out where the bias is not known."""
    out = []
    for row in store.labelled_answers(model):
        if versions.get(row["persona"]) != row["prompt_version"]:
            continue  # another prompt version asked other questions
        criteria = [Criterion.model_validate(c) for c in json.loads(row["criteria"] or "[]")]
        if row["uncalibrated"]:
            bias = biases.get((row["persona"], row["prompt_hash"]))
            if bias is None:
                continue
            criteria = [
                c
                if c.source == "card"
                else c.model_copy(update={"p_yes": raw_answer(c.p_yes, bias.get(c.id))})
                for c in criteria
            ]
        out.append(
            {
                "slug": row["slug"],
                "persona": row["persona"],
                "ref_verdict": row["verdict"],
                "ref_score": row["score"],
                "relevance": row["relevance"],
                "criteria": criteria,
            }
        )
    return out
