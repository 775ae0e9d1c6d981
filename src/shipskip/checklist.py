"""Checklist scoring: from P(yes) per question to a score, an abstention and the facts a card
settles. Pure functions; the checks on a take's text are in `take_checks`."""

from __future__ import annotations

from collections.abc import Sequence

from .models import Criterion, ToolCard, by_effect
from .personas import Checklist


def card_facts(checklist: Checklist, card: ToolCard, criteria: Sequence[Criterion]) -> list[Criterion]:
    """The criteria with every `from_card` item answered from the card (1.0 or 0.0), in checklist
    order. Facts are always read afresh, so stored model answers can be re-scored with them; so
    are each answer's weight, reference point (the fit's mean answer) and settling fact, which
    explain it (models.by_effect) by the persona file as it is now."""
    by_id = {c.id: c for c in criteria}
    out = []
    for item in checklist.items:
        if item.from_card is None:
            if item.id in by_id:
                out.append(
                    by_id[item.id].model_copy(update={
                        "weight": round(checklist.weight(item), 2),
                        "baseline": round(checklist.mean(item), 4),
                        "settled_by": item.settled_by,
                    })
                )  # fmt: skip
            continue
        out.append(
            Criterion(
                id=item.id, label=item.label, weight=round(checklist.weight(item), 2),
                p_yes=1.0 if item.from_card.holds(card) else 0.0, source="card", baseline=0.5,
            )
        )  # fmt: skip
    return out


# What `explanation_faults` finds: one thing the card settles listed as holding and as not
# holding ("for: free to start" beside "lacking: card offers a free start"); something the
# card's facts assert listed as lacking; any listed criterion saying the opposite of a card fact.
EXPLANATION_FAULTS = ("two_sides", "lacking_what_card_states", "contradicts_card")


def explanation_faults(checklist: Checklist, criteria: Sequence[Criterion]) -> set[str]:
    """The faults of one take's explanation as the pages list it (models.by_effect), judged by
    the persona file: each question a card fact settles (`settled_by`) is about that fact."""
    items = {i.id: i for i in checklist.items}
    truth = {c.id: bool(c.met) for c in criteria if c.source == "card" and c.met is not None}
    claims: dict[str, set[bool]] = {}
    faults = set()
    for side, listed in zip(("for", "against", "lacking"), by_effect(list(criteria)), strict=True):
        for c in listed:
            item = items.get(c.id)
            if item is None:
                continue
            holds = side != "lacking"  # what the listing says of the criterion
            if item.from_card is not None:
                fact, of_fact = item.id, holds
            elif (settled := item.settling_fact) is not None:
                fact, of_fact = settled[0], holds == settled[1]  # what it says of the fact
            else:
                continue
            claims.setdefault(fact, set()).add(of_fact)
            if fact in truth and truth[fact] != of_fact:
                faults.add("contradicts_card")
                if not holds:
                    faults.add("lacking_what_card_states")
    if any(len(said) > 1 for said in claims.values()):
        faults.add("two_sides")
    return faults


def features(
    checklist: Checklist, criteria: Sequence[Criterion], p_relevant: float | None
) -> dict[str, float]:
    """What the calibrated formulas read: each item's P(yes) (a failed one at its reference
    mean), the mean of the model's answers ('yes_rate') and the relevance answer."""
    by_id = {c.id: c.p_yes for c in criteria}
    x = {}
    for item in checklist.items:
        p = by_id.get(item.id)
        x[item.id] = p if p is not None else checklist.mean(item)
    # How readily the model says yes about this card at all: over the questions only, since
    # facts read from the card carry no model bias.
    asked = [x[item.id] for item in checklist.items if item.question is not None]
    x["yes_rate"] = sum(asked) / len(asked) if asked else 0.5
    x["relevance"] = 1.0 if p_relevant is None else p_relevant
    return x


def score_from(checklist: Checklist, criteria: Sequence[Criterion]) -> int:
    """base + sum(weight * P(yes)) + yes_rate_weight * yes_rate, clamped to 0-100."""
    x = features(checklist, criteria, None)
    total = checklist.calibration.base + checklist.calibration.yes_rate_weight * x["yes_rate"]
    total += sum(checklist.weight(item) * x[item.id] for item in checklist.items)
    return max(0, min(100, round(total)))


def below_relevance(checklist: Checklist, p_relevant: float | None) -> bool:
    """A clear "no" to the relevance question: abstain without asking the rest."""
    if checklist.relevance is None or p_relevant is None:
        return False
    return p_relevant < checklist.calibration.abstain_below


def abstains(checklist: Checklist, p_relevant: float | None, criteria: Sequence[Criterion]) -> bool:
    """The relevance cut-off, then the fitted abstention formula over relevance and items."""
    if below_relevance(checklist, p_relevant):
        return True
    cal = checklist.calibration
    if checklist.relevance is None or not cal.abstain_weights:
        return False
    x = features(checklist, criteria, p_relevant)
    return cal.abstain_base + sum(w * x[k] for k, w in cal.abstain_weights.items()) > 0
