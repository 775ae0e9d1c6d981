"""Scoring the panel against a labelled reference set."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cards import parse_card
from .errors import InputError, ShipskipError, describe_validation_error
from .models import PERSONAS, Take, ToolCard
from .quality import cohen_kappa, consensus, is_grounded, spearman


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["ship", "skip", "abstain"]
    score: Annotated[int, Field(ge=0, le=100)] | None = None


class RefItem(BaseModel):
    card: ToolCard
    reference: dict[Literal["builder", "skeptic", "futurist", "creator", "founder"], Label]


def load_reference(path: Path) -> list[RefItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, "file", f"unreadable ({type(exc).__name__})") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(where, "(line)", f"invalid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InputError(where, "(root)", "each line must be an object with card and reference")
        card = parse_card(data.get("card"), where)
        try:
            items.append(RefItem(card=card, reference=data.get("reference", {})))
        except ValidationError as exc:
            field, msg = describe_validation_error(exc)
            raise InputError(where, field, msg) from None
    if not items:
        raise ShipskipError(f"{path}: no reference items")
    return items


class ItemResult(BaseModel):
    slug: str
    persona: str
    ref_verdict: str | None
    ref_score: int | None
    verdict: str | None
    score: int | None
    first_attempt_valid: bool
    grounded: bool | None
    verdict_flips: float
    score_spread: int | None
    take: str | None


def judge_item(item: RefItem, persona: str, draws: list[Take]) -> tuple[ItemResult, Take]:
    take = consensus(draws) if len(draws) > 1 else draws[0]
    ref = item.reference.get(persona)  # type: ignore[call-overload]
    first = draws[0]
    return (
        ItemResult(
            slug=item.card.slug,
            persona=persona,
            ref_verdict=ref.verdict if ref else None,
            ref_score=ref.score if ref else None,
            verdict=take.verdict or "abstain",
            score=take.score,
            first_attempt_valid=first.attempts == 1 and not first.error,
            grounded=is_grounded(take.take, item.card) if take.take else None,
            verdict_flips=take.verdict_flips,
            score_spread=take.score_spread,
            take=take.take,
        ),  # fmt: skip
        take,
    )


def summarise(results: list[ItemResult], similarities: list[float]) -> dict:
    """Per persona and overall figures; None where there is nothing to measure."""

    def figures(rows: list[ItemResult]) -> dict:
        labelled = [r for r in rows if r.ref_verdict]
        scored = [r for r in rows if r.ref_score is not None and r.score is not None]
        spoke = [r for r in rows if r.verdict != "abstain"]
        refs, got = [r.ref_verdict or "" for r in labelled], [r.verdict or "" for r in labelled]
        return {
            "n": len(rows),
            "valid_first_attempt": round(sum(r.first_attempt_valid for r in rows) / len(rows), 3),
            "abstention_rate": round(sum(r.verdict == "abstain" for r in rows) / len(rows), 3),
            "verdict_agreement": round(sum(r.verdict == r.ref_verdict for r in labelled) / len(labelled), 3)
            if labelled else None,
            "kappa": cohen_kappa(refs, got),
            "mae": round(statistics.fmean(abs(r.score - r.ref_score) for r in scored), 1)  # type: ignore[operator]
            if scored else None,
            "spearman": spearman([r.ref_score for r in scored], [r.score for r in scored]),  # type: ignore[misc]
            "flip_rate": round(statistics.fmean(r.verdict_flips for r in rows), 3),
            "grounded_rate": round(sum(bool(r.grounded) for r in spoke) / len(spoke), 3) if spoke else None,
        }  # fmt: skip

    out = {"overall": figures(results)}
    out["overall"]["similarity"] = round(statistics.fmean(similarities), 3) if similarities else None
    for p in PERSONAS:
        rows = [r for r in results if r.persona == p]
        if rows:
            out[p] = figures(rows)
    return out
