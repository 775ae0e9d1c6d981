"""Panel arithmetic: pure functions over takes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product
from typing import Literal

from .models import PanelVerdict, Take

# A verdict needs at least this many counted personas: one persona alone is a take, not a panel.
MIN_COUNTED = 2


def round_half_up_pct(part: int, whole: int) -> int:
    return (200 * part + whole) // (2 * whole)


def label_for(ship: int, skip: int) -> Literal["Ship", "Skip", "Mixed", "No verdict"]:
    """The panel's label from its counted calls, the one place it is decided: the majority of
    counted personas that spoke, an even split "Mixed", and fewer than two of them "No verdict"."""
    if ship + skip < MIN_COUNTED:
        return "No verdict"
    return "Ship" if ship > skip else "Skip" if skip > ship else "Mixed"


def flip_chance(p_ship: Sequence[float], label: str) -> float | None:
    """The chance the label would come out otherwise, were each counted persona's call drawn
    independently with its P(ship): exact, by enumerating the 2^n calls (n is five at most)."""
    if label == "No verdict" or not p_ship:
        return None
    other = 0.0
    for calls in product((True, False), repeat=len(p_ship)):
        chance = 1.0
        for ships, p in zip(calls, p_ship, strict=True):
            chance *= p if ships else 1.0 - p
        ship = sum(calls)
        if label_for(ship, len(calls) - ship) != label:
            other += chance
    return round(other, 4)


def counts(take: Take) -> bool:
    """A take counts in the panel when it has a verdict, was not flagged for prompt injection
    (the card may have bought it) and its persona carries signal on its model."""
    return take.verdict is not None and not take.suspicious and take.counted


def aggregate(takes: Iterable[Take], contested_above: float | None = None) -> PanelVerdict:
    """Panel ship % is ship / (ship + skip) over the counted personas; abstentions sit outside
    both counts.

    The label follows the majority of counted personas that spoke (`label_for`). A take flagged
    for prompt injection, or from a persona with no signal on its model, is shown but not counted.
    With `contested_above`, a verdict whose flip chance is above it is marked contested.
    """
    takes = list(takes)
    counted = [t for t in takes if counts(t)]
    ship = sum(1 for t in counted if t.verdict == "ship")
    skip = sum(1 for t in counted if t.verdict == "skip")
    abstain = sum(1 for t in takes if t.verdict is None)
    flagged = sum(1 for t in takes if t.suspicious and t.verdict is not None)
    not_counted = sum(1 for t in takes if t.verdict is not None and not t.suspicious and not t.counted)
    label = label_for(ship, skip)
    probs = [t.p_ship for t in counted]
    chance = flip_chance([p for p in probs if p is not None], label) if None not in probs else None
    return PanelVerdict(
        ship=ship, skip=skip, abstain=abstain,
        ship_pct=None if label == "No verdict" else round_half_up_pct(ship, ship + skip),
        label=label, flagged=flagged, not_counted=not_counted, flip_chance=chance,
        contested=chance is not None and contested_above is not None and chance > contested_above,
    )  # fmt: skip
