"""The figures an evaluation reports over its results (one row per tool and persona): panel
ranking and Ship accuracy, per-persona agreement, bootstrap intervals, which personas count, how well
calibrated the flip chance is. Pure: no model, no store."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel

from . import calibrations
from .calibrate import Observation, Prediction, out_of_fold, predict, ship_chance, ship_curve
from .checklist import EXPLANATION_FAULTS, card_facts, explanation_faults
from .metrics import balanced_accuracy, calibration_error, cohen_kappa, f1, percentiles, spearman
from .models import PanelVerdict, Take, ToolCard
from .panel import aggregate, label_for
from .personas import PromptSet
from .reference import ItemResult
from .roster import personas


class EvalRun(BaseModel):
    """An evaluation as stored: its row in eval_runs, and the figures it stored with it (nested
    by what they judge: out_of_fold, persona_files, counted, explanations, takes for the
    checklist; overall, each persona and targets for holistic draws), as printed."""

    eval_id: str
    summary: dict[str, Any]


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
    for p in personas():
        rows = [r for r in results if r.persona == p]
        if rows:
            out[p] = figures(rows)
    return out


def observations(results: list[ItemResult], persona: str) -> list[Observation]:
    return [
        Observation(
            slug=r.slug,
            answers={c.id: c.p_yes for c in r.criteria},
            relevance=r.relevance,
            ref_verdict=r.ref_verdict or "abstain",
            ref_score=r.ref_score,
        )
        for r in results
        if r.persona == persona and r.ref_verdict
    ]


def with_predictions(
    results: list[ItemResult], predictions: dict[tuple[str, str], Prediction]
) -> list[ItemResult]:
    """The results with verdict and score replaced by (out-of-fold) predictions."""
    out = []
    for r in results:
        pred = predictions.get((r.slug, r.persona))
        if pred is not None:
            r = r.model_copy(update={"verdict": pred.verdict, "score": pred.score})
        out.append(r)
    return out


def checklist_predictions(
    prompts: PromptSet, results: list[ItemResult], oof: bool
) -> dict[tuple[str, str], Prediction]:
    """Predictions per (tool, persona): out-of-fold refits, or the persona files' own weights."""
    out = {}
    for persona, p in prompts.personas.items():
        obs = observations(results, persona)
        preds = out_of_fold(p.checklist, obs) if oof else [predict(p.checklist, o) for o in obs]
        out.update({(pr.slug, persona): pr for pr in preds})
    return out


def _by_tool(results: list[ItemResult]) -> list[list[ItemResult]]:
    groups: dict[str, list[ItemResult]] = {}
    for r in results:
        groups.setdefault(r.slug, []).append(r)
    return list(groups.values())


def _panel_takes(rows: list[ItemResult], ref: bool, counted: set[str] | None = None) -> list[Take]:
    """One tool's personas as takes: the reference labels (every persona counts: the labelled panel is
    the truth) or the predictions, where a persona outside `counted` (None: all) does not count."""
    out = []
    for r in rows:
        v = r.ref_verdict if ref else r.verdict
        verdict: Literal["ship", "skip"] | None = "ship" if v == "ship" else ("skip" if v == "skip" else None)
        out.append(Take(
            persona=r.persona, verdict=verdict, score=None,
            counted=ref or counted is None or r.persona in counted,
        ))  # fmt: skip
    return out


def _panels(
    tools: list[list[ItemResult]], counted: set[str] | None = None
) -> tuple[float | None, float | None, int, int]:
    """Panel ship % Spearman, Ship vs not-Ship balanced accuracy, and how many panels read Ship
    (predicted, reference), over per-tool groups of personas, the predicted panel counting only
    the personas in `counted` (None: all). A tool may appear more than once (a bootstrap draw)."""

    ref_pct, got_pct, ref_ship, got_ship = [], [], [], []
    for rows in tools:
        ref_v, got_v = aggregate(_panel_takes(rows, True)), aggregate(_panel_takes(rows, False, counted))
        ref_pct.append(ref_v.ship_pct if ref_v.ship_pct is not None else 50)
        got_pct.append(got_v.ship_pct if got_v.ship_pct is not None else 50)
        ref_ship.append(ref_v.label == "Ship")
        got_ship.append(got_v.label == "Ship")
    pos = [g for r, g in zip(ref_ship, got_ship, strict=True) if r]
    neg = [not g for r, g in zip(ref_ship, got_ship, strict=True) if not r]
    return spearman(ref_pct, got_pct), balanced_accuracy(pos, neg), sum(got_ship), sum(ref_ship)


def panel_figures(results: list[ItemResult], counted: set[str] | None = None) -> dict:
    """The issue's targets: panel ranking, Ship vs not-Ship, per-persona agreement, abstention,
    spread; the panel counting only the personas in `counted` (None: all)."""
    tools = _by_tool(results)
    rho, balanced, got_ship, ref_ship = _panels(tools, counted)
    scores = [r.score for r in results if r.score is not None]
    top_share = round(max(Counter(scores).values()) / len(scores), 3) if scores else None
    labelled = [r for r in results if r.ref_verdict]
    return {
        "tools": len(tools),
        "panel_ship_pct_spearman": rho,
        "ship_balanced_accuracy": balanced,
        "panels_ship": f"{got_ship}/{len(tools)}",
        "reference_panels_ship": f"{ref_ship}/{len(tools)}",
        "abstention_f1": f1(
            [r.ref_verdict == "abstain" for r in labelled], [r.verdict == "abstain" for r in labelled]
        ),
        "top_score_share": top_share,
        "score_sd": round(statistics.pstdev(scores), 1) if len(scores) > 1 else None,
    }


def explanation_figures(prompts: PromptSet, results: list[ItemResult], cards: dict[str, ToolCard]) -> dict:
    """Over the personas that speak (and so show why): how many takes' explanations list one thing
    the card settles on two sides, list as lacking what the card's facts assert, or contradict
    a card fact at all (checklist.explanation_faults), each explained by the persona files as
    they are now. Each should be 0."""
    spoke = [r for r in results if r.verdict in ("ship", "skip") and r.criteria]
    found = []
    for r in spoke:
        checklist = prompts.personas[r.persona].checklist
        found.append(explanation_faults(checklist, card_facts(checklist, cards[r.slug], r.criteria)))
    return {"takes": len(spoke), **{f: sum(f in got for got in found) for f in EXPLANATION_FAULTS}}


# Fixed, so the same answers always print the same intervals.
BOOTSTRAP_DRAWS = 1000


BOOTSTRAP_SEED = 20261126


def intervals(
    results: list[ItemResult],
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
    counted: set[str] | None = None,
) -> dict:
    """95% bootstrap intervals for the panel figures and each persona's agreement and kappa, by
    drawing whole tools with replacement. They say how far a figure could move on another set
    of this size, such as a held-out one: on forty-odd tools one tool's panel moves the
    Spearman by about 0.04."""
    tools = _by_tool(results)
    rng = random.Random(seed)
    kept: dict[str, list[float]] = {"panel_ship_pct_spearman": [], "ship_balanced_accuracy": []}
    for _ in range(draws):
        drawn = [tools[rng.randrange(len(tools))] for _ in tools]
        rho, balanced, _, _ = _panels(drawn)
        for key, value in (("panel_ship_pct_spearman", rho), ("ship_balanced_accuracy", balanced)):
            if value is not None:
                kept[key].append(value)
        if counted is not None:
            rho, balanced, _, _ = _panels(drawn, counted)
            for key, value in (
                ("counted_panel_ship_pct_spearman", rho),
                ("counted_ship_balanced_accuracy", balanced),
            ):
                if value is not None:
                    kept.setdefault(key, []).append(value)
        for p, f in persona_figures([r for rows in drawn for r in rows]).items():
            kept.setdefault(f"{p}_agreement", []).append(f["verdict_agreement"])
            if f["kappa"] is not None:
                kept.setdefault(f"{p}_kappa", []).append(f["kappa"])
    return {"draws": draws, **{k: percentiles(v) for k, v in kept.items()}}


def persona_figures(results: list[ItemResult]) -> dict:
    """Agreement and kappa (ship / skip / abstain) and score error, per persona."""
    out = {}
    for p in personas():
        rows = [r for r in results if r.persona == p and r.ref_verdict]
        if not rows:
            continue
        refs, got = [r.ref_verdict or "" for r in rows], [r.verdict or "abstain" for r in rows]
        scored = [r for r in rows if r.ref_score is not None and r.score is not None]
        out[p] = {
            "n": len(rows),
            "verdict_agreement": round(sum(a == b for a, b in zip(refs, got, strict=True)) / len(rows), 3),
            "kappa": cohen_kappa(refs, got),
            "mae": round(statistics.fmean(abs(r.score - r.ref_score) for r in scored), 1)  # type: ignore[operator]
            if scored else None,
            "abstained": f"{sum(g == 'abstain' for g in got)} (ref {sum(r == 'abstain' for r in refs)})",
        }  # fmt: skip
    return out


def counted_personas(per_persona: dict, kappa_min: float) -> set[str]:
    """The personas whose out-of-fold kappa (persona_figures) lets them count: the rule a review
    applies to each take (calibrations.persona_standing)."""
    return {p for p, f in per_persona.items() if calibrations.persona_standing(f, p, kappa_min)[0]}


def oof_ship_chances(results: list[ItemResult]) -> dict[tuple[str, str], float]:
    """Each persona's P(ship) at its out-of-fold score, on a ship curve fitted on the other tools'
    out-of-fold scores (leave one tool out again), so the chance is as out-of-fold as the score."""
    out = {}
    for persona in dict.fromkeys(r.persona for r in results):
        rows = [r for r in results if r.persona == persona and r.score is not None]
        labelled = [r for r in rows if r.ref_verdict in ("ship", "skip")]
        for r in rows:
            train = [x for x in labelled if x.slug != r.slug]
            curve = ship_curve([x.score for x in train], [x.ref_verdict == "ship" for x in train])  # type: ignore[misc]
            chance = ship_chance(curve, r.score)
            if chance is not None:
                out[(r.slug, persona)] = chance
    return out


def _verdicts(
    results: list[ItemResult], counted: set[str], chances: dict[tuple[str, str], float]
) -> list[tuple[PanelVerdict, str, str]]:
    """Per tool: the predicted panel (counted personas, each with its P(ship)), the label the
    reference gives those same counted personas, and the label of the whole labelled panel."""

    out: list[tuple[PanelVerdict, str, str]] = []
    for rows in _by_tool(results):
        takes = [
            t.model_copy(update={"p_ship": chances.get((r.slug, r.persona))})
            for r, t in zip(rows, _panel_takes(rows, False, counted), strict=True)
        ]
        ref = [r for r in rows if r.persona in counted]
        ship = sum(r.ref_verdict == "ship" for r in ref)
        skip = sum(r.ref_verdict == "skip" for r in ref)
        out.append((aggregate(takes), label_for(ship, skip), aggregate(_panel_takes(rows, True)).label))
    return out


def flip_figures(
    results: list[ItemResult],
    counted: set[str],
    chances: dict[tuple[str, str], float],
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """How well calibrated the flip chance is, out-of-fold: over the panels that give a verdict,
    each panel's flip chance against whether the reference labels of the same counted personas give
    another label (what the chance claims to measure), as expected calibration error with a 95%
    bootstrap interval over tools; and the same against the whole labelled panel."""
    rows = [(v.flip_chance, ref, full, v.label) for v, ref, full in _verdicts(results, counted, chances)]
    pairs = [(c, ref != label) for c, ref, _, label in rows if c is not None]
    full = [(c, whole != label) for c, _, whole, label in rows if c is not None]
    ece, table = calibration_error(pairs)
    rng = random.Random(seed)
    drawn = (
        [calibration_error([pairs[rng.randrange(len(pairs))] for _ in pairs])[0] for _ in range(draws)]
        if pairs
        else []
    )
    return {
        "panels": len(pairs),
        "mean_flip_chance": round(statistics.fmean(c for c, _ in pairs), 3) if pairs else None,
        "flipped": round(sum(e for _, e in pairs) / len(pairs), 3) if pairs else None,
        "ece": ece,
        "ece_interval": percentiles([d for d in drawn if d is not None]),
        "ece_whole_panel": calibration_error(full)[0],
        "bins": table,
    }


# Flip-chance cut-offs the selective table is printed at (1.0 gives every verdict).
SELECTIVE_CUTS = (0.05, 0.1, 0.2, 0.3, 0.35, 0.5, 1.0)


def selective_figures(
    results: list[ItemResult], counted: set[str], chances: dict[tuple[str, str], float]
) -> list[dict]:
    """Accuracy against coverage (selective judging): the panel gives its verdict only where its
    flip chance is at most a cut-off (a verdict with no known chance only at 1.0). Coverage is
    the share of all tools judged; accuracy and balanced accuracy are Ship vs not-Ship against
    the whole labelled panel, over the tools judged."""
    rows = _verdicts(results, counted, chances)
    out = []
    for cut in SELECTIVE_CUTS:
        judged = [
            (v.label == "Ship", full == "Ship")
            for v, _, full in rows
            if v.label != "No verdict" and (v.flip_chance if v.flip_chance is not None else 1.0) <= cut
        ]
        pos = [g for g, r in judged if r]
        neg = [not g for g, r in judged if not r]
        out.append({
            "max_flip_chance": cut, "tools": len(judged), "coverage": round(len(judged) / len(rows), 3),
            "accuracy": round(sum(g == r for g, r in judged) / len(judged), 3) if judged else None,
            "balanced_accuracy": balanced_accuracy(pos, neg),
        })  # fmt: skip
    return out


def counted_figures(results: list[ItemResult], per_persona: dict, kappa_min: float) -> dict:
    """What counting only the personas with signal, and the flip chance, do to the panel figures
    out-of-fold: the panel with every persona and with the counted ones, the share of tools given
    a verdict, the flip chance's calibration and accuracy against coverage."""
    counted = counted_personas(per_persona, kappa_min)
    chances = oof_ship_chances(results)
    every, kept = _verdicts(results, set(per_persona), chances), _verdicts(results, counted, chances)
    return {
        "kappa_min": kappa_min,
        "counted": [p for p in per_persona if p in counted],
        "not_counted": [p for p in per_persona if p not in counted],
        "all_seats": {**panel_figures(results),
                      "coverage": round(sum(v.label != "No verdict" for v, _, _ in every) / len(every), 3)},
        "counted_seats": {**panel_figures(results, counted),
                          "coverage": round(sum(v.label != "No verdict" for v, _, _ in kept) / len(kept), 3)},
        "flip": flip_figures(results, counted, chances),
        "selective": selective_figures(results, counted, chances),
    }  # fmt: skip


def extreme_share(results: list[ItemResult]) -> float | None:
    """The share of scores at exactly 0 or 100: a calibration that does not fit its model piles
    them there."""
    scores = [r.score for r in results if r.score is not None]
    return round(sum(s in (0, 100) for s in scores) / len(scores), 3) if scores else None
