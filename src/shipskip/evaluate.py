"""Scoring the panel against a labelled reference set."""

from __future__ import annotations

import json
import math
import random
import shlex
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import calibrations
from .calibrate import Observation, Prediction, fit, out_of_fold, predict, ship_chance, ship_curve
from .calibrations import Entry, ModelKey, Scoring
from .cards import parse_card
from .checklist import EXPLANATION_FAULTS, card_facts, explanation_faults, take_problem
from .errors import BadParameter, InputError, NotHeldOut, ShipskipError, describe_validation_error
from .models import Criterion, PanelVerdict, Take, ToolCard
from .personas import Checklist, PromptSet, load_prompts, tools_digest
from .quality import cohen_kappa, consensus, is_grounded, panel_similarity, spearman
from .review import Panel, Spend, model_keys, open_panel
from .roster import personas
from .settings import Settings
from .store import Store
from .take_checks import unsupported


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
    relevance: float | None = None
    criteria: list[Criterion] = []


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
            grounded=is_grounded(take.text, item.card) if take.text else None,
            verdict_flips=take.verdict_flips,
            score_spread=take.score_spread,
            take=take.text,
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
    for p in personas():
        rows = [r for r in results if r.persona == p]
        if rows:
            out[p] = figures(rows)
    return out


# -- checklist evaluation: answers once, weights fitted and judged out-of-fold ------------


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


def _f1(truth: list[bool], guess: list[bool]) -> float | None:
    tp = sum(t and g for t, g in zip(truth, guess, strict=True))
    fp = sum(g and not t for t, g in zip(truth, guess, strict=True))
    fn = sum(t and not g for t, g in zip(truth, guess, strict=True))
    return round(2 * tp / (2 * tp + fp + fn), 3) if (tp + fp + fn) else None


def _by_tool(results: list[ItemResult]) -> list[list[ItemResult]]:
    groups: dict[str, list[ItemResult]] = {}
    for r in results:
        groups.setdefault(r.slug, []).append(r)
    return list(groups.values())


def _panel_takes(rows: list[ItemResult], ref: bool, counted: set[str] | None = None) -> list[Take]:
    """One tool's seats as takes: the reference labels (every seat counts: the labelled panel is
    the truth) or the predictions, where a seat outside `counted` (None: all) does not count."""
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
    (predicted, reference), over per-tool groups of seats, the predicted panel counting only
    the seats in `counted` (None: all). A tool may appear more than once (a bootstrap draw)."""
    from .panel import aggregate

    ref_pct, got_pct, ref_ship, got_ship = [], [], [], []
    for rows in tools:
        ref_v, got_v = aggregate(_panel_takes(rows, True)), aggregate(_panel_takes(rows, False, counted))
        ref_pct.append(ref_v.ship_pct if ref_v.ship_pct is not None else 50)
        got_pct.append(got_v.ship_pct if got_v.ship_pct is not None else 50)
        ref_ship.append(ref_v.label == "Ship")
        got_ship.append(got_v.label == "Ship")
    pos = [g for r, g in zip(ref_ship, got_ship, strict=True) if r]
    neg = [not g for r, g in zip(ref_ship, got_ship, strict=True) if not r]
    balanced = round((sum(pos) / len(pos) + sum(neg) / len(neg)) / 2, 3) if pos and neg else None
    return spearman(ref_pct, got_pct), balanced, sum(got_ship), sum(ref_ship)


def panel_figures(results: list[ItemResult], counted: set[str] | None = None) -> dict:
    """The issue's targets: panel ranking, Ship vs not-Ship, per-seat agreement, abstention,
    spread; the panel counting only the seats in `counted` (None: all)."""
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
        "abstention_f1": _f1(
            [r.ref_verdict == "abstain" for r in labelled], [r.verdict == "abstain" for r in labelled]
        ),
        "top_score_share": top_share,
        "score_sd": round(statistics.pstdev(scores), 1) if len(scores) > 1 else None,
    }


def explanation_figures(prompts: PromptSet, results: list[ItemResult], cards: dict[str, ToolCard]) -> dict:
    """Over the seats that speak (and so show why): how many takes' explanations list one thing
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


def _percentiles(values: list[float]) -> list[float] | None:
    """The 2.5th and 97.5th percentiles (nearest rank), or None with nothing to rank."""
    if not values:
        return None
    xs = sorted(values)
    lo, hi = xs[int(0.025 * (len(xs) - 1))], xs[math.ceil(0.975 * (len(xs) - 1))]
    return [round(lo, 3), round(hi, 3)]


def intervals(
    results: list[ItemResult],
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
    counted: set[str] | None = None,
) -> dict:
    """95% bootstrap intervals for the panel figures and each seat's agreement and kappa, by
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
        for p, f in seat_figures([r for rows in drawn for r in rows]).items():
            kept.setdefault(f"{p}_agreement", []).append(f["verdict_agreement"])
            if f["kappa"] is not None:
                kept.setdefault(f"{p}_kappa", []).append(f["kappa"])
    return {"draws": draws, **{k: _percentiles(v) for k, v in kept.items()}}


def seat_figures(results: list[ItemResult]) -> dict:
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


# -- which seats count, and how sure a verdict is -----------------------------------------


def counted_seats(seats: dict, kappa_min: float) -> set[str]:
    """The personas whose out-of-fold kappa (seat_figures) lets them count: the rule a review
    applies to each take (calibrations.seat_standing)."""
    return {p for p, f in seats.items() if calibrations.seat_standing(f, p, kappa_min)[0]}


def oof_ship_chances(results: list[ItemResult]) -> dict[tuple[str, str], float]:
    """Each seat's P(ship) at its out-of-fold score, on a ship curve fitted on the other tools'
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
    """Per tool: the predicted panel (counted seats, each with its P(ship)), the label the
    reference gives those same counted seats, and the label of the whole labelled panel."""
    from .panel import aggregate, label_for

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


FLIP_BINS = 10  # equal-width bins of the flip chance, as expected calibration error is usually taken


def _ece(pairs: list[tuple[float, bool]]) -> tuple[float | None, list[dict]]:
    """Expected calibration error: per bin, |mean chance - share that flipped|, weighed by the
    bin's share of the panels; and the bins themselves (a reliability table)."""
    if not pairs:
        return None, []
    total, table = 0.0, []
    for b in range(FLIP_BINS):
        inside = [(p, e) for p, e in pairs if min(int(p * FLIP_BINS), FLIP_BINS - 1) == b]
        if not inside:
            continue
        chance = statistics.fmean(p for p, _ in inside)
        flipped = sum(e for _, e in inside) / len(inside)
        total += abs(chance - flipped) * len(inside)
        table.append({"bin": f"{b / FLIP_BINS:.1f}-{(b + 1) / FLIP_BINS:.1f}", "panels": len(inside),
                      "mean_chance": round(chance, 3), "flipped": round(flipped, 3)})  # fmt: skip
    return round(total / len(pairs), 3), table


def flip_figures(
    results: list[ItemResult],
    counted: set[str],
    chances: dict[tuple[str, str], float],
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """How well calibrated the flip chance is, out-of-fold: over the panels that give a verdict,
    each panel's flip chance against whether the reference labels of the same counted seats give
    another label (what the chance claims to measure), as expected calibration error with a 95%
    bootstrap interval over tools; and the same against the whole labelled panel."""
    rows = [(v.flip_chance, ref, full, v.label) for v, ref, full in _verdicts(results, counted, chances)]
    pairs = [(c, ref != label) for c, ref, _, label in rows if c is not None]
    full = [(c, whole != label) for c, _, whole, label in rows if c is not None]
    ece, table = _ece(pairs)
    rng = random.Random(seed)
    drawn = (
        [_ece([pairs[rng.randrange(len(pairs))] for _ in pairs])[0] for _ in range(draws)] if pairs else []
    )
    return {
        "panels": len(pairs),
        "mean_flip_chance": round(statistics.fmean(c for c, _ in pairs), 3) if pairs else None,
        "flipped": round(sum(e for _, e in pairs) / len(pairs), 3) if pairs else None,
        "ece": ece,
        "ece_interval": _percentiles([d for d in drawn if d is not None]),
        "ece_whole_panel": _ece(full)[0],
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
            "balanced_accuracy": round((sum(pos) / len(pos) + sum(neg) / len(neg)) / 2, 3)
            if pos and neg else None,
        })  # fmt: skip
    return out


def counted_figures(results: list[ItemResult], seats: dict, kappa_min: float) -> dict:
    """What counting only the seats with signal, and the flip chance, do to the panel figures
    out-of-fold: the panel with every seat and with the counted ones, the share of tools given
    a verdict, the flip chance's calibration and accuracy against coverage."""
    counted = counted_seats(seats, kappa_min)
    chances = oof_ship_chances(results)
    every, kept = _verdicts(results, set(seats), chances), _verdicts(results, counted, chances)
    return {
        "kappa_min": kappa_min,
        "counted": [p for p in seats if p in counted],
        "not_counted": [p for p in seats if p not in counted],
        "all_seats": {**panel_figures(results),
                      "coverage": round(sum(v.label != "No verdict" for v, _, _ in every) / len(every), 3)},
        "counted_seats": {**panel_figures(results, counted),
                          "coverage": round(sum(v.label != "No verdict" for v, _, _ in kept) / len(kept), 3)},
        "flip": flip_figures(results, counted, chances),
        "selective": selective_figures(results, counted, chances),
    }  # fmt: skip


# (what was done, tool slug, persona): called after each seat, for progress.
OnSeat = Callable[[str, str, str], None]


def _quiet(step: str, slug: str, persona: str) -> None:
    pass


def collect_answers(
    panel: Panel,
    items: list[RefItem],
    on_seat: OnSeat = _quiet,
    checklists: dict[str, Checklist] | None = None,
    *,
    done: dict[tuple[str, str], ItemResult] | None = None,
    keep: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Every persona's relevance and checklist answers on every labelled card (no take yet), as
    the model gave them (never corrected), weighed by `checklists` (default: the prompts').
    Seats in `done` (by tool and persona) are not asked again; `keep` gets each seat as soon as
    it is answered, so a run that is killed loses at most the seat it was on."""
    results = []
    for item in items:
        for persona in panel.prompts.personas:
            if done and (item.card.slug, persona) in done:
                results.append(done[(item.card.slug, persona)])
                on_seat("kept", item.card.slug, persona)
                continue
            spend = Spend()
            rel = panel.prompts.personas[persona].checklist.relevance
            p_rel = panel.answer(persona, item.card, rel.question, spend)[0] if rel else None
            checklist = (checklists or {}).get(persona) or panel.prompts.personas[persona].checklist
            answers = panel.raw_answers(persona, item.card, spend)
            criteria = Scoring(checklist=checklist, model="", label="").criteria(item.card, answers)
            asked = sum(c.source != "card" for c in criteria)
            ref = item.reference.get(persona)  # type: ignore[call-overload]
            results.append(
                ItemResult(
                    slug=item.card.slug, persona=persona,
                    ref_verdict=ref.verdict if ref else None, ref_score=ref.score if ref else None,
                    verdict=None, score=None,
                    first_attempt_valid=spend.attempts == asked + bool(rel),
                    grounded=None, verdict_flips=0.0, score_spread=None, take=None,
                    relevance=p_rel, criteria=criteria,
                )
            )  # fmt: skip
            if keep:
                keep(results[-1])
            on_seat("asked", item.card.slug, persona)
    return results


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


def takes_to_check(items: list[RefItem], results: list[ItemResult], limit: int) -> int:
    """How many takes `check_takes` will ask for: seats with a verdict on the first `limit` tools."""
    first = {i.card.slug for i in items[:limit]}
    return sum(r.slug in first and r.verdict in ("ship", "skip") and r.score is not None for r in results)


def check_takes(
    panel: Panel, items: list[RefItem], results: list[ItemResult], limit: int, on_seat: OnSeat = _quiet
) -> tuple[list[ItemResult], dict]:
    """Write takes for the first `limit` tools at their predicted verdicts; count what stood.

    Each published take (written, or composed from the checklist after every attempt was
    refused) is checked again here, independently of the retry loop that produced it: for
    its stance and echoes, and for a number, name, placeholder or claim its card lacks."""
    cards = {i.card.slug: i.card for i in items[:limit]}
    out, written, composed, failed, agree, invented = [], 0, 0, 0, 0, 0
    refused: Counter[str] = Counter()
    for r in results:
        if r.slug in cards and r.verdict in ("ship", "skip") and r.score is not None:
            spend = Spend()
            card = cards[r.slug]
            text, was_composed = panel.take_text(r.persona, card, r.verdict, r.score, r.criteria, spend)
            refused.update(spend.refusals)
            if text is None:
                failed += 1
            else:
                written += 1
                composed += was_composed
                p = panel.prompts.personas[r.persona]
                agree += take_problem(text, r.verdict, p, "") is None
                bad = unsupported(text, card, r.score, [c.label for c in r.criteria])
                invented += bad is not None and bad.kind != "ungrounded"
                r = r.model_copy(update={"take": text, "grounded": is_grounded(text, card)})
            on_seat("wrote a take", r.slug, r.persona)
        out.append(r)
    asked = written + failed
    return out, {
        "takes_asked": asked,
        "takes_written": written,
        "takes_failed_checks": failed,
        "takes_consistent": round(agree / written, 3) if written else None,
        "grounded_rate": round(sum(bool(r.grounded) for r in out if r.take) / written, 3)
        if written
        else None,
        # Published takes holding a number, name, placeholder or claim the card lacks.
        "takes_stating_what_the_card_lacks": invented,
        "composed_from_checklist": composed,
        "composed_rate": round(composed / written, 3) if written else None,
        # Attempts our checks refused on the way, by what they got wrong.
        "attempts_refused": ", ".join(f"{k} {n}" for k, n in sorted(refused.items())) or "none",
    }


def _stored_answers(store: Store | None, answers_from: str) -> list[ItemResult]:
    """Answers of a stored eval, by id (or prefix), or from a JSON Lines file of them (the
    embedded model's answers on the reference set ship in data/reference/)."""
    path = Path(answers_from)
    if path.suffix == ".jsonl" and path.is_file():
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(ItemResult.model_validate({
                        "verdict": None, "score": None, "grounded": None, "verdict_flips": 0.0,
                        "score_spread": None, "take": None, **json.loads(line),
                    }))  # fmt: skip
                except (json.JSONDecodeError, ValidationError) as exc:
                    raise InputError(path, f"line {n}", str(exc).splitlines()[0]) from None
        return rows
    if store is None:
        raise ShipskipError(f"{answers_from}: no such answers file")
    return [ItemResult.model_validate(r) for r in store.eval_items(answers_from)]


def stored_answers(
    store: Store | None, answers_from: str, items: list[RefItem], prompts: PromptSet
) -> list[ItemResult]:
    """The stored answers (eval id, or a .jsonl file) for these tools and personas, with the
    facts read from each card by the persona files as they are now: those are rules, so they
    are read afresh rather than taken from the stored answers."""
    wanted = {(i.card.slug, p) for i in items for p in prompts.personas}
    cards = {i.card.slug: i.card for i in items}
    return [
        r.model_copy(update={
            "criteria": card_facts(prompts.personas[r.persona].checklist, cards[r.slug], r.criteria)
        })
        for r in _stored_answers(store, answers_from)
        if (r.slug, r.persona) in wanted
    ]  # fmt: skip


def _fitted_on(prompts: PromptSet) -> set[str]:
    """The labelled files the calibrations were fitted on, as each one's command names it."""
    fitted_on = set()
    for p in prompts.personas.values():
        words = shlex.split(p.checklist.calibration.command or "")
        args = words[words.index("eval") + 1 :] if "eval" in words else []
        fitted_on.add(next((a for a in args if not a.startswith("-")), "an unrecorded set"))
    return fitted_on


def _fit_note(prompts: PromptSet, reference: Path, slugs: list[str]) -> str:
    """Whether the persona files' weights were fitted on exactly these tools (their figures are
    then in-sample) or on others: the digest each file records of the tools its fit saw decides,
    so a reference file that has grown since the fit is not taken for the one it fitted."""
    cals = [p.checklist.calibration for p in prompts.personas.values()]
    fitted_on = _fitted_on(prompts)
    if all(c.tools_digest for c in cals):
        these = tools_digest(slugs)
        if all(c.tools_digest == these for c in cals):
            return "in-sample"
    elif any(Path(f).resolve() == reference.resolve() for f in fitted_on):
        return "in-sample"  # fitted before digests were recorded: the path is all there is
    counts = sorted({c.tools for c in cals if c.tools})
    size = f" ({'/'.join(map(str, counts))} tools)" if counts else ""
    return f"fitted on {', '.join(sorted(fitted_on))}{size}: held out where no tool is shared"


def held_out_note(prompts: PromptSet, reference: Path, slugs: list[str]) -> str:
    """The fit note of a held-out judgement, after checking that no tool in `slugs` was among
    the tools the model's calibration was fitted on (by slug, in each labelled file its fit
    names); raises NotHeldOut where one was. A file that is not here cannot be checked, and the
    note says so rather than vouching for it."""
    if _fit_note(prompts, reference, slugs) == "in-sample":
        raise NotHeldOut(str(reference), str(reference), sorted(slugs))
    checked, unchecked = [], []
    for name in sorted(_fitted_on(prompts)):
        path = Path(name)
        if not path.is_file():
            unchecked.append(name)
            continue
        fitted = {i.card.slug for i in load_reference(path)}
        shared = sorted(fitted & set(slugs))
        if shared:
            raise NotHeldOut(str(reference), name, shared)
        checked.append(f"{name} ({len(fitted)} tools)")
    note = (
        f"held out: fitted on {', '.join(checked)}, none of these {len(slugs)} tools"
        if checked
        else "held out"
    )
    return note + (
        f"; fitted on {', '.join(unchecked)}, not found here: overlap unchecked" if unchecked else ""
    )


# Each seat's answers as `--answers` reads them back: the model's, not what was made of them.
ANSWER_FIELDS = {
    "slug",
    "persona",
    "ref_verdict",
    "ref_score",
    "first_attempt_valid",
    "relevance",
    "criteria",
}


def _answer_line(r: ItemResult) -> str:
    return json.dumps(
        r.model_dump(mode="json", include=ANSWER_FIELDS, exclude={"criteria": {"__all__": {"settled_by"}}})
    )


def write_answers(path: Path, results: list[ItemResult]) -> None:
    """The model's answers as JSON Lines, one seat of one tool a line, in the form of
    data/reference/answers-*.jsonl; written whole, so a file is never left half-written."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(f"{_answer_line(r)}\n" for r in results), encoding="utf-8")
    tmp.replace(path)


@contextmanager
def appending_answers(path: Path) -> Iterator[Callable[[ItemResult], None]]:
    """A function that appends one seat's answers to `path` and flushes, for a long collection
    to survive a kill; the file is rewritten whole, in order, once the collection is done."""
    with path.open("a", encoding="utf-8") as f:

        def keep(r: ItemResult) -> None:
            f.write(f"{_answer_line(r)}\n")
            f.flush()

        yield keep


def answered_seats(path: Path, items: list[RefItem], prompts: PromptSet) -> dict[tuple[str, str], ItemResult]:
    """The seats already answered in a --save-answers file from an interrupted run, to be kept
    rather than asked again: only those of these tools whose stored items are still exactly
    their persona's checklist items (a changed checklist is asked afresh). A last line cut short
    by a kill is left out; any other bad line stops with the file and line named."""
    if not path.is_file():
        return {}
    cards = {i.card.slug: i.card for i in items}
    lines = path.read_text(encoding="utf-8").splitlines()
    done = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = ItemResult.model_validate({
                "verdict": None, "score": None, "grounded": None, "verdict_flips": 0.0,
                "score_spread": None, "take": None, **json.loads(line),
            })  # fmt: skip
        except (json.JSONDecodeError, ValidationError) as exc:
            if n == len(lines) and not path.read_text(encoding="utf-8").endswith("\n"):
                continue  # the seat a kill interrupted: asked again
            raise InputError(path, f"line {n}", str(exc).splitlines()[0]) from None
        checklist = prompts.personas[r.persona].checklist if r.persona in prompts.personas else None
        if r.slug not in cards or checklist is None:
            continue
        if [c.id for c in r.criteria] != [i.id for i in checklist.items]:
            continue
        done[(r.slug, r.persona)] = r.model_copy(
            update={"criteria": card_facts(checklist, cards[r.slug], r.criteria)}
        )
    return done


def run_checklist_eval(
    settings: Settings,
    reference: Path,
    *,
    answers_from: str | None = None,
    takes: int = 0,
    write_weights: bool = False,
    held_out: bool = False,
    save_answers: Path | None = None,
    command: str = "",
    on_seat: OnSeat = _quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
) -> dict:
    """Ask the checklist on every labelled card (or reuse a stored evaluation's answers), then
    judge the weights out-of-fold; with `write_weights`, fit on everything and write them.
    With SHIPSKIP_CATALOGUE_FACTS the out-of-fold fit also reads each card's catalogue facts
    (from the cards above it in the reference); reviews do not, so no weights are written then.
    With `held_out`, judge only the model's calibration as it stands, fitted on other tools:
    nothing is fitted on this file's labels. `save_answers` writes the answers to that file."""
    if settings.catalogue_facts and (write_weights or takes):
        raise BadParameter(
            "SHIPSKIP_CATALOGUE_FACTS",
            "the catalogue facts are measured only: leave out --write-weights and --takes",
        )
    if held_out and write_weights:
        raise ShipskipError(
            "--held-out judges the calibration as it stands, so it cannot also --write-weights"
        )
    items = load_reference(reference)
    raw = load_prompts(settings.prompts_dir)
    keys = model_keys(settings, raw, list(raw.personas), require=False)
    prompts, _ = calibrations.calibrated_prompts(
        raw, settings.calibrations_dir, keys, settings.uncalibrated_points
    )
    # Checked before a question is asked, so a file that is not held out costs nothing.
    slugs = [i.card.slug for i in items]
    fit = held_out_note(prompts, reference, slugs) if held_out else None
    store = Store.from_settings(settings)
    if answers_from:
        results = stored_answers(store, answers_from, items, prompts)
        model = f"answers of eval {answers_from}"
    else:
        # With --save-answers, the seats a killed run already answered are kept, not asked again.
        done = answered_seats(save_answers, items, prompts) if save_answers else {}
        on_phase("Asking the checklist", len(items) * len(prompts.personas))
        with ExitStack() as stack:
            panel = stack.enter_context(open_panel(settings, raw, require=False))
            keep = stack.enter_context(appending_answers(save_answers)) if save_answers else None
            checklists = {n: p.checklist for n, p in prompts.personas.items()}
            results = collect_answers(panel, items, on_seat, checklists, done=done, keep=keep)
            model = ", ".join(sorted({c.model for c in panel.clients.values()}))
    if save_answers:
        write_answers(save_answers, results)
    summary: dict = {}
    if not held_out:
        if settings.catalogue_facts:
            from . import catalogue

            facts = catalogue.reference_facts([i.card for i in items], catalogue.reference_shipped(items))
            with_facts = catalogue.with_fact_items(prompts, catalogue.FACTS)
            fed = catalogue.with_fact_answers(results, facts, catalogue.FACTS)
            oof = with_predictions(fed, checklist_predictions(with_facts, fed, oof=True))
        else:
            oof = with_predictions(results, checklist_predictions(prompts, results, oof=True))
        oof_seats = seat_figures(oof)
        oof_intervals = intervals(oof, counted=counted_seats(oof_seats, settings.count_kappa_min))
        summary["out_of_fold"] = {**panel_figures(oof), "seats": oof_seats, "intervals": oof_intervals}
        summary["counted"] = counted_figures(oof, oof_seats, settings.count_kappa_min)
    if write_weights:
        # Written before the model's own figures are taken, so those figures are the new weights'.
        write_fitted(settings, prompts, keys, results, oof, oof_intervals, command)
        prompts, _ = calibrations.calibrated_prompts(
            raw, settings.calibrations_dir, keys, settings.uncalibrated_points
        )
    files = with_predictions(results, checklist_predictions(prompts, results, oof=False))
    summary["persona_files"] = {
        **panel_figures(files),
        "seats": seat_figures(files),
        "intervals": intervals(files),
        "fit": fit or _fit_note(prompts, reference, slugs),
    }
    summary["explanations"] = explanation_figures(prompts, files, {i.card.slug: i.card for i in items})
    # The rows stored (and whose takes are checked) are the judged ones: out-of-fold, or when
    # held out the calibration's own.
    judged = files if held_out else oof
    if takes:
        on_phase("Writing takes", takes_to_check(items, judged, takes))
        with open_panel(settings, raw, require=False) as panel:
            judged, summary["takes"] = check_takes(panel, items, judged, takes, on_seat)
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    eval_id = store.save_eval(str(reference), model, prompt_hash, 1, summary, judged)
    return {"eval_id": eval_id, "summary": summary}


def run_holistic_eval(
    settings: Settings,
    reference: Path,
    samples: int = 3,
    on_seat: OnSeat = _quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
) -> dict:
    """The holistic prompt on every labelled card, `samples` draws per seat (median kept)."""
    items = load_reference(reference)
    prompts = load_prompts(settings.prompts_dir)
    on_phase(f"Drawing {samples} takes per seat", len(items) * len(prompts.personas))
    results, similarities = [], []
    with open_panel(settings, prompts) as panel:
        for item in items:
            takes = []
            for persona in prompts.personas:
                draws = [panel.draw(persona, item.card) for _ in range(samples)]
                result, take = judge_item(item, persona, draws)
                results.append(result)
                takes.append(take)
                on_seat("drew", item.card.slug, persona)
            sim = panel_similarity(takes, item.card)
            if sim is not None:
                similarities.append(sim)
        model = ", ".join(sorted({c.model for c in panel.clients.values()}))
    summary = summarise(results, similarities)
    summary["targets"] = {**panel_figures(results), "seats": seat_figures(results)}
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    store = Store.from_settings(settings)
    eval_id = store.save_eval(str(reference), model, prompt_hash, samples, summary, results)
    return {"eval_id": eval_id, "summary": summary}


# -- calibrating a model: its answers on the labelled reference, stored as they arrive ------


def seat_entry_figures(oof: list[ItemResult], oof_intervals: dict, persona: str) -> dict:
    """What a calibration records of its persona's out-of-fold fit: agreement and kappa with
    their intervals, on how many tools."""
    f = seat_figures(oof).get(persona)
    if f is None:
        return {}
    rows = [
        r for r in oof if r.persona == persona and r.score is not None and r.ref_verdict in ("ship", "skip")
    ]
    return {
        "tools": f["n"], "verdict_agreement": f["verdict_agreement"], "kappa": f["kappa"],
        "agreement_interval": oof_intervals.get(f"{persona}_agreement"),
        "kappa_interval": oof_intervals.get(f"{persona}_kappa"),
        "interval": f"95% bootstrap, {oof_intervals.get('draws')} draws of whole tools",
        # P(ship) at a score: what each take's p_ship and so the panel's flip chance come from.
        "ship_curve": ship_curve([r.score for r in rows], [r.ref_verdict == "ship" for r in rows]),  # type: ignore[misc]
    }  # fmt: skip


def with_figures(
    data: calibrations.CalibrationFile, prompts: PromptSet, oof: list[ItemResult], oof_intervals: dict
) -> calibrations.CalibrationFile:
    """The calibration file with each entry's out-of-fold figures recomputed from these
    results (for the entry's persona, where its prompt version is the one evaluated), its
    weights untouched: how the shipped file gets its figures from the committed answers."""
    entries = [
        e.model_copy(update={"figures": seat_entry_figures(oof, oof_intervals, e.persona)})
        if e.persona in prompts.personas and prompts.personas[e.persona].version == e.prompt_version
        else e
        for e in data.entries
    ]
    return data.model_copy(update={"entries": entries})


def write_fitted(
    settings: Settings,
    prompts: PromptSet,
    keys: dict[str, ModelKey],
    results: list[ItemResult],
    oof: list[ItemResult],
    oof_intervals: dict,
    command: str,
) -> list[Path]:
    """Fit each persona on all the answers and write the calibrations, one file per model,
    under SHIPSKIP_CALIBRATIONS_DIR (each replacing any for the same persona and prompt version)."""
    today = datetime.now(UTC).date().isoformat()
    by_key: dict[ModelKey, list[Entry]] = {}
    for persona, p in prompts.personas.items():
        cal = fit(p.checklist, observations(results, persona), command=command, fitted_on=today)
        by_key.setdefault(keys[persona], []).append(
            Entry(persona=persona, prompt_version=p.version, calibration=cal,
                  figures=seat_entry_figures(oof, oof_intervals, persona))
        )  # fmt: skip
    folder = settings.calibrations_dir
    return [
        calibrations.write(folder, calibrations.with_entries(calibrations.read(folder, key), key, entries))
        for key, entries in by_key.items()
    ]


class Plan(BaseModel):
    """What a calibration will still ask, shown before it asks anything."""

    model: str
    tools: int
    requests: int
    prompt_tokens: int
    answer_tokens: int
    answered: int  # answers already stored from an earlier, interrupted run
    resuming: bool


def answers_path(settings: Settings, key: ModelKey) -> Path:
    return settings.calibrations_dir / "answers" / key.file_name.replace(".json", ".jsonl")


def _read_answers(path: Path) -> dict[tuple[str, str, str, str], dict]:
    """Stored answers by (tool, persona, prompt hash, item). A line cut short by a kill is
    skipped: that answer is asked again."""
    out: dict[tuple[str, str, str, str], dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            a = json.loads(line)
            out[(a["slug"], a["persona"], a["prompt_hash"], a["item"])] = a
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return out


def _questions(prompts: PromptSet, persona: str) -> dict[str, str]:
    p = prompts.personas[persona].checklist
    asked = {"relevance": p.relevance.question} if p.relevance else {}
    return {**asked, **{i.id: i.question for i in p.items if i.question}}


def plan_calibration(settings: Settings, reference: Path, limit: int | None = None) -> Plan:
    """The requests and tokens a calibration of the configured model will still spend: every
    question of every persona on the first `limit` reference tools, less the answers stored.
    Prompt tokens are estimated at four characters a token."""
    from .personas import question_messages

    items = load_reference(reference)[:limit]
    prompts = load_prompts(settings.prompts_dir)
    keys = model_keys(settings, prompts, list(prompts.personas), require=False)
    stored = {k: _read_answers(answers_path(settings, k)) for k in set(keys.values())}
    requests = chars = answered = 0
    for item in items:
        for persona in prompts.personas:
            h = prompts.prompt_hash(persona)
            have = stored[keys[persona]]
            for item_id, question in _questions(prompts, persona).items():
                if (item.card.slug, persona, h, item_id) in have:
                    answered += 1
                    continue
                requests += 1
                chars += sum(
                    len(m["content"]) for m in question_messages(prompts, persona, item.card, question)
                )
    return Plan(
        model=", ".join(sorted({str(k) for k in keys.values()})), tools=len(items), requests=requests,
        prompt_tokens=chars // 4, answer_tokens=requests * settings.checklist_max_tokens,
        answered=answered, resuming=any(stored.values()),
    )  # fmt: skip


def extreme_share(results: list[ItemResult]) -> float | None:
    """The share of scores at exactly 0 or 100: a calibration that does not fit its model piles
    them there."""
    scores = [r.score for r in results if r.score is not None]
    return round(sum(s in (0, 100) for s in scores) / len(scores), 3) if scores else None


def run_calibration(
    settings: Settings,
    reference: Path,
    *,
    limit: int | None = None,
    command: str = "",
    on_seat: OnSeat = _quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
    with_labels: bool = False,
) -> dict:
    """Ask the configured model every checklist question on the labelled reference (the first
    `limit` tools), storing each answer as it arrives so a run that is killed goes on where it
    stopped; then fit each persona, judge the fit out-of-fold and write the model's calibration.
    `with_labels` adds the store's editors' labels on this model's takes to what is fitted."""
    items = load_reference(reference)[:limit]
    prompts = load_prompts(settings.prompts_dir)
    names = list(prompts.personas)
    keys = model_keys(settings, prompts, names, require=False)
    stored = {k: _read_answers(answers_path(settings, k)) for k in set(keys.values())}
    reported: dict[str, set[str]] = {n: set() for n in names}
    on_phase("Asking the checklist", len(items) * len(names))
    files = {k: answers_path(settings, k) for k in keys.values()}
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with ExitStack() as stack:
        panel = None
        out = {k: stack.enter_context(f.open("a", encoding="utf-8")) for k, f in files.items()}
        for k, f in files.items():
            if f.stat().st_size and not f.read_bytes().endswith(b"\n"):
                out[k].write("\n")  # a line a kill cut short stays on its own, unread
        for item in items:
            for persona in names:
                h, have = prompts.prompt_hash(persona), stored[keys[persona]]
                got: dict[str, tuple[float | None, str]] = {}
                for item_id, question in _questions(prompts, persona).items():
                    a = have.get((item.card.slug, persona, h, item_id))
                    if a is None:
                        if panel is None:  # nothing is started when every answer is stored
                            panel = stack.enter_context(open_panel(settings, prompts, require=False))
                        spend = Spend()
                        p, source = panel.answer(persona, item.card, question, spend)
                        if p is None:
                            got[item_id] = (None, "failed")  # asked again on the next run
                            continue
                        a = {
                            "slug": item.card.slug, "persona": persona, "prompt_hash": h, "item": item_id,
                            "p_yes": p, "source": source, "model": ", ".join(sorted(spend.models)),
                        }  # fmt: skip
                        # One line per answer, flushed: a kill loses at most the answer in flight.
                        out[keys[persona]].write(json.dumps(a) + "\n")
                        out[keys[persona]].flush()
                        have[(item.card.slug, persona, h, item_id)] = a
                    got[item_id] = (a["p_yes"], a["source"])
                    if a.get("model"):
                        reported[persona].update(a["model"].split(", "))
                results.append(_stored_seat(prompts, item, persona, got))
                on_seat("asked", item.card.slug, persona)
    # The calibration is filed under the model the provider said answered, where it said one.
    keys = {
        n: ModelKey(sorted(reported[n])[0], keys[n].digest) if len(reported[n]) == 1 else keys[n]
        for n in names
    }
    labelled = 0
    if with_labels:
        results, labelled = with_editor_labels(
            Store.from_settings(settings), prompts, keys, results, settings.calibrations_dir
        )
    oof = with_predictions(results, checklist_predictions(prompts, results, oof=True))
    oof_intervals = intervals(oof)
    written = write_fitted(settings, prompts, keys, results, oof, oof_intervals, command)
    fitted, notes = calibrations.calibrated_prompts(
        prompts, settings.calibrations_dir, keys, settings.uncalibrated_points
    )
    in_sample = with_predictions(results, checklist_predictions(fitted, results, oof=False))
    summary = {
        "out_of_fold": {**panel_figures(oof), "seats": seat_figures(oof), "intervals": oof_intervals,
                        "extreme_share": extreme_share(oof)},
        "persona_files": {**panel_figures(in_sample), "seats": seat_figures(in_sample),
                          "extreme_share": extreme_share(in_sample), "fit": "in-sample"},
    }  # fmt: skip
    model = ", ".join(sorted({str(k) for k in keys.values()}))
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    store = Store.from_settings(settings)
    eval_id = store.save_eval(str(reference), model, prompt_hash, 1, summary, oof)
    return {"eval_id": eval_id, "summary": summary, "written": [str(p) for p in written], "model": model,
            "calibrations": notes, "editor_labels": labelled}  # fmt: skip


def with_editor_labels(
    store: Store,
    prompts: PromptSet,
    keys: dict[str, ModelKey],
    results: list[ItemResult],
    calibrations_dir: Path,
) -> tuple[list[ItemResult], int]:
    """The results plus one per editor's label on a seat scored by that seat's model (its
    latest label there, on the answers of the take it judged). A labelled seat that is also a
    reference card's takes the editor's call in place of the reference's, so no tool counts
    twice in the out-of-fold figures. Also how many labels were added."""
    from .labels import labelled_observations

    versions = {n: p.version for n, p in prompts.personas.items()}
    added: dict[tuple[str, str], ItemResult] = {}
    for key in sorted(set(keys.values()), key=str):
        model = key.model
        # The content-free biases an uncalibrated take of this model was corrected by.
        data = calibrations.read(calibrations_dir, key)
        biases = {(b.persona, b.prompt_hash): b.p_yes for b in (data.contextual if data else [])}
        for row in labelled_observations(store, model, versions, biases):
            if keys.get(row["persona"], ModelKey("")).model != model:
                continue
            added[(row["slug"], row["persona"])] = ItemResult(
                **row, verdict=None, score=None, first_attempt_valid=True, grounded=None,
                verdict_flips=0.0, score_spread=None, take=None,
            )  # fmt: skip
    kept = [r for r in results if (r.slug, r.persona) not in added]
    return kept + list(added.values()), len(added)


def calibration_results(settings: Settings, reference: Path, key: ModelKey) -> list[ItemResult]:
    """The answers `shipskip calibrate` stored for one model, as evaluation results per
    reference card and seat (for the current prompts; a question not answered reads as failed)."""
    prompts = load_prompts(settings.prompts_dir)
    stored = _read_answers(answers_path(settings, key))
    out = []
    for item in load_reference(reference):
        for persona in prompts.personas:
            h = prompts.prompt_hash(persona)
            got = {
                k[3]: (a["p_yes"], a["source"])
                for k, a in stored.items()
                if k[:3] == (item.card.slug, persona, h)
            }
            out.append(_stored_seat(prompts, item, persona, got))
    return out


def _stored_seat(
    prompts: PromptSet, item: RefItem, persona: str, got: dict[str, tuple[float | None, str]]
) -> ItemResult:
    """One seat's stored answers on one reference card, as an evaluation reads them."""
    checklist = prompts.personas[persona].checklist
    answers = [(i, *got.get(i.id, (None, "card"))) for i in checklist.items]
    criteria = Scoring(checklist=checklist, model="", label="").criteria(item.card, answers)  # type: ignore[arg-type]
    ref = item.reference.get(persona)  # type: ignore[call-overload]
    return ItemResult(
        slug=item.card.slug, persona=persona,
        ref_verdict=ref.verdict if ref else None, ref_score=ref.score if ref else None,
        verdict=None, score=None, first_attempt_valid=True, grounded=None, verdict_flips=0.0,
        score_spread=None, take=None, relevance=got.get("relevance", (None, ""))[0], criteria=criteria,
    )  # fmt: skip
