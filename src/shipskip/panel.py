"""Panel arithmetic: pure functions over takes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .models import PanelVerdict, Take


def round_half_up_pct(part: int, whole: int) -> int:
    return (200 * part + whole) // (2 * whole)


def aggregate(takes: Iterable[Take]) -> PanelVerdict:
    """Panel ship % is ship / (ship + skip); abstentions sit outside both counts.

    The label follows the majority of seats that spoke: more ships read "Ship", more skips
    read "Skip", an even split reads "Mixed", and a panel where every seat abstained has
    "No verdict". A take flagged for prompt injection is shown but not counted: the card may
    have bought its verdict.
    """
    takes = list(takes)
    counted = [t for t in takes if not t.suspicious]
    ship = sum(1 for t in counted if t.verdict == "ship")
    skip = sum(1 for t in counted if t.verdict == "skip")
    abstain = sum(1 for t in takes if t.verdict is None)
    flagged = sum(1 for t in takes if t.suspicious and t.verdict is not None)
    spoke = ship + skip
    if spoke == 0:
        return PanelVerdict(
            ship=0, skip=0, abstain=abstain, ship_pct=None, label="No verdict", flagged=flagged
        )
    label: Literal["Ship", "Skip", "Mixed"] = "Ship" if ship > skip else "Skip" if skip > ship else "Mixed"
    return PanelVerdict(
        ship=ship, skip=skip, abstain=abstain, ship_pct=round_half_up_pct(ship, spoke), label=label,
        flagged=flagged,
    )  # fmt: skip
