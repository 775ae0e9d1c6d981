"""Checks made while reviewing: is a take grounded in its card, how alike are the panel's
takes, the consensus of several samples, whether a panel is contested. Pure functions over
takes and cards; the statistics an evaluation reports are in `metrics`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import combinations

from .models import Take, ToolCard
from .panel import aggregate

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9.+-]*[A-Za-z0-9]|\d+(?:\.\d+)?")
STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does for from has have i if in into is it its
    it's just me more most my no not of on one or our so some than that the their them then there
    these they this to too up was we what when where which who will with would you your yours about
    also any because before being both each few how here like make makes many much must only other
    over own same should such very well tool tools use used uses using new get gets good great
    really thing things way ship skip score take think""".split()  # noqa: SIM905
)


def content_words(text: str, drop: str = "") -> set[str]:
    dropped = {w.lower() for w in _WORD.findall(drop)}
    return {
        w.lower().rstrip(".")
        for w in _WORD.findall(text)
        if w.lower() not in STOPWORDS and w.lower() not in dropped and (len(w) >= 4 or w[0].isdigit())
    }


def grounding_facts(card: ToolCard) -> set[str]:
    """Words a take can only use if it read this card: the description's content words."""
    return content_words(card.description, drop=card.name)


def is_grounded(take: str | None, card: ToolCard) -> bool:
    """A take is grounded when it names at least one fact (content word) from the description."""
    if not take:
        return False
    return bool(content_words(take, drop=card.name) & grounding_facts(card))


def grounding(take: str | None, card: ToolCard) -> bool | None:
    """`is_grounded`, or None where that check cannot judge: no take, or a description with
    no content word to name (pages show no badge for None)."""
    if not take or not grounding_facts(card):
        return None
    return is_grounded(take, card)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def panel_similarity(takes: Sequence[Take], card: ToolCard) -> float | None:
    """Mean pairwise word overlap of the takes on one tool: near 1 means five copies of one voice."""
    words = [content_words(t.text or "", drop=card.name) for t in takes if t.text]
    pairs = list(combinations(words, 2))
    return round(sum(jaccard(a, b) for a, b in pairs) / len(pairs), 3) if pairs else None


def flip_rate(verdicts: Sequence[str | None]) -> float:
    """Share of samples whose verdict differs from the most common one."""
    if not verdicts:
        return 0.0
    top = Counter(verdicts).most_common(1)[0][1]
    return round(1 - top / len(verdicts), 3)


def consensus(samples: Sequence[Take]) -> Take:
    """Keep the sample with the median score; record the spread and how often the verdict flipped."""
    spoke = sorted((t for t in samples if t.score is not None), key=lambda t: t.score or 0)
    if not spoke:
        chosen = samples[0]
        spread = None
    else:
        chosen = spoke[(len(spoke) - 1) // 2]
        spread = (spoke[-1].score or 0) - (spoke[0].score or 0)
    return chosen.model_copy(
        update={
            "samples": len(samples),
            "score_spread": spread,
            "verdict_flips": flip_rate([t.verdict for t in samples]),
            "attempts": sum(t.attempts for t in samples),
            "usage": sum((t.usage for t in samples[1:]), samples[0].usage),
        }
    )


def is_contested(takes: Sequence[Take]) -> bool:
    """The panel label would change if any one unstable persona had voted its other way."""
    label = aggregate(takes).label
    for i, t in enumerate(takes):
        if not t.verdict_flips or t.verdict is None:
            continue
        other = "skip" if t.verdict == "ship" else "ship"
        swapped = [*takes[:i], t.model_copy(update={"verdict": other}), *takes[i + 1 :]]
        if aggregate(swapped).label != label:
            return True
    return False


def order_independent(page_ab: dict[str, str], page_ba: dict[str, str]) -> bool:
    """Per-tool verdict lines read off A-vs-B and B-vs-A must match."""
    return page_ab == page_ba
