"""Market context from the catalogue: numeric facts about a card read from the tools reviewed
before it, at no model call.

A 135M model cannot know who already does what a card describes; the store can, for the tools
it has seen. For a card on a given day the catalogue is the tools whose day (`launched`, or
the day first reviewed where a card has no launch date) is strictly earlier, so no fact ever
reads a later tool: not its text, not its verdict, not even its words' counts (the TF-IDF
weights are computed over the earlier cards alone).

The facts, each between 0 and 1:
- `catalogue_nearest`: cosine similarity (TF-IDF over name, tagline and description) to the
  most similar earlier card;
- `catalogue_similar`: the mean similarity of the `k` most similar earlier cards;
- `catalogue_category_busy`: launches in the same category in the `window_days` before,
  as n / (n + 5), so five launches read 0.5;
- `catalogue_rivals_shipped`: how the nearest earlier tools fared with the panel: the share
  of them it shipped, weighted by similarity (0.5 where none is similar at all).

Pure-Python TF-IDF rather than DuckDB's `fts` extension (which the registry has for the
pinned DuckDB as `duckdb-extension-fts`): its BM25 index is built over the whole table, so
its term statistics would include tools launched after the card, and it is an index kept in
the database file that a DuckLake cannot hold.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from .models import Criterion, ToolCard
from .personas import CardFact, Item, PromptSet

FACTS = ("catalogue_nearest", "catalogue_similar", "catalogue_category_busy", "catalogue_rivals_shipped")

# Words every card uses, which say nothing about what the tool does.
_STOP_WORDS = (
    "a an and are as at be by can for from has have in into is it its of on or that the this to "
    "with without your you their they them our we which who what when where while will not no "
    "than then there these those so such also more most other some any each all one two new "
    "use used uses using tool tools app apps based built make makes made lets let via over "
    "out up about only just like own per"
)
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[a-z0-9][a-z0-9+#.-]*[a-z0-9+#]|[a-z0-9]")


@dataclass(frozen=True)
class Earlier:
    """A tool in the catalogue: its words, category, day, and the share of the panel that
    shipped it (None where the panel gave no verdict)."""

    slug: str
    name: str
    text: str
    category: str
    day: date | None
    shipped: float | None


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if w not in _STOP and len(w) > 1]


def card_words(card: ToolCard) -> str:
    return f"{card.name} {card.tagline} {card.description}"


def _vector(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    v = {w: (1.0 + math.log(c)) * idf[w] for w, c in counts.items() if w in idf}
    norm = math.sqrt(sum(x * x for x in v.values()))
    return {w: x / norm for w, x in v.items()} if norm else {}


def similarities(text: str, earlier: Sequence[Earlier]) -> list[float]:
    """Cosine similarity of `text` to each earlier card, with inverse document frequencies
    taken over the earlier cards only (smoothed: a word they never use is left out)."""
    docs = [Counter(words(e.text)) for e in earlier]
    n = len(docs)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
    idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
    q = _vector(Counter(words(text)), idf)
    out = []
    for d in docs:
        v = _vector(d, idf)
        out.append(round(sum(x * v.get(w, 0.0) for w, x in q.items()), 4))
    return out


def before(day: date | None, catalogue: Sequence[Earlier]) -> list[Earlier]:
    """The tools strictly earlier than `day` (with no day, none: an undated card sees nothing,
    rather than risk seeing what came after it)."""
    if day is None:
        return []
    return [e for e in catalogue if e.day is not None and e.day < day]


def facts(
    card: ToolCard, day: date | None, catalogue: Sequence[Earlier], k: int = 3, window_days: int = 90
) -> dict[str, float]:
    """The catalogue facts of a card on `day`, from the tools before it (see the module)."""
    prior = before(day, catalogue)
    if not prior or day is None:
        return {
            "catalogue_nearest": 0.0, "catalogue_similar": 0.0,
            "catalogue_category_busy": 0.0, "catalogue_rivals_shipped": 0.5,
        }  # fmt: skip
    sims = similarities(card_words(card), prior)
    ranked = sorted(zip(sims, range(len(prior)), strict=True), reverse=True)[:k]
    since = day - timedelta(days=window_days)
    busy = sum(1 for e in prior if e.category == card.category and e.day is not None and e.day >= since)
    rated = [(s, float(v)) for s, j in ranked if s > 0 and (v := prior[j].shipped) is not None]
    weight = sum(s for s, _ in rated)
    return {
        "catalogue_nearest": ranked[0][0],
        "catalogue_similar": round(sum(s for s, _ in ranked) / k, 4),
        "catalogue_category_busy": round(busy / (busy + 5), 4),
        "catalogue_rivals_shipped": round(sum(s * v for s, v in rated) / weight, 4) if weight else 0.5,
    }


def nearest(
    card: ToolCard, day: date | None, catalogue: Sequence[Earlier], k: int = 3
) -> list[tuple[str, float]]:
    """The `k` most similar earlier tools, by name, with their similarity (none below 0.05)."""
    prior = before(day, catalogue)
    if not prior:
        return []
    sims = similarities(card_words(card), prior)
    ranked = sorted(zip(sims, range(len(prior)), strict=True), reverse=True)[:k]
    return [(prior[j].name, s) for s, j in ranked if s >= 0.05]


# The reference cards carry no launch date; in their file's order, one a day (the pace the
# panel reviews at) stands in, so each card's catalogue is the cards above it.
REFERENCE_START = date(2026, 1, 1)


def reference_days(slugs: Sequence[str]) -> dict[str, date]:
    return {s: REFERENCE_START + timedelta(days=n) for n, s in enumerate(slugs)}


def reference_facts(
    cards: Sequence[ToolCard], shipped: dict[str, float | None], k: int = 3, window_days: int = 90
) -> dict[str, dict[str, float]]:
    """The facts of each reference card from the cards before it in the file (`reference_days`);
    `shipped` is how each fared (the share of its reference panel that shipped it)."""
    days = reference_days([c.slug for c in cards])
    catalogue = [
        Earlier(c.slug, c.name, card_words(c), c.category, days[c.slug], shipped.get(c.slug)) for c in cards
    ]
    return {c.slug: facts(c, days[c.slug], catalogue, k, window_days) for c in cards}


def from_store(rows: Sequence[dict]) -> list[Earlier]:
    """The catalogue from `Store.catalogue` rows (each tool's day and its panel's ship %)."""
    return [
        Earlier(
            r["slug"],
            r["name"],
            f"{r['name']} {r['tagline']} {r['description']}",
            r["category"],
            r["day"],
            None if r["ship_pct"] is None else r["ship_pct"] / 100,
        )  # fmt: skip
        for r in rows
    ]


def card_day(card: ToolCard, today: date) -> date:
    """The day a card is placed on: its launch, or today for a card that gives none."""
    return card.launched or today


# -- the facts as checklist inputs ------------------------------------------------------

# The way each fact counts, fixed from the lenses before any figure was seen: a card much like
# earlier ones, or in a crowded category, is a me-too (against); for the Futurist a busy
# category is the trend line the tool rides (for); rivals the panel shipped speak for it.
DIRECTION = {
    "catalogue_nearest": "against", "catalogue_similar": "against",
    "catalogue_category_busy": "against", "catalogue_rivals_shipped": "for",
}  # fmt: skip
DIRECTION_BY_PERSONA = {("futurist", "catalogue_category_busy"): "for"}
# A fact is no card pattern: this one never matches; the value comes from the catalogue.
_NEVER = CardFact(fields=["name"], pattern="(?!)x")


def with_fact_items(prompts: PromptSet, names: Sequence[str]) -> PromptSet:
    """The prompts with the named facts as extra checklist inputs of every persona, each held to
    its direction like any item, so a fit may weigh a fact but never turn it round."""
    personas = {}
    for persona, p in prompts.personas.items():
        extra = [
            Item(id=n, from_card=_NEVER, label=n.replace("_", " "),
                 counts=DIRECTION_BY_PERSONA.get((persona, n), DIRECTION[n]))  # type: ignore[arg-type]
            for n in names
        ]  # fmt: skip
        checklist = p.checklist.model_copy(update={"items": [*p.checklist.items, *extra]})
        personas[persona] = p.model_copy(update={"checklist": checklist})
    return prompts.model_copy(update={"personas": personas})


R = TypeVar("R", bound=Any)


def with_fact_answers(
    results: Sequence[R], facts_by_slug: dict[str, dict[str, float]], names: Sequence[str]
) -> list[R]:
    """Evaluation results with each tool's facts added to its personas' answers (read as P(yes))."""
    return [
        r.model_copy(update={"criteria": [
            *r.criteria,
            *(Criterion(id=n, label=n, weight=0.0, p_yes=facts_by_slug[r.slug][n]) for n in names),
        ]})
        for r in results
    ]  # fmt: skip


def reference_shipped(reference: Sequence[Any]) -> dict[str, float | None]:
    """How each reference card fared: the share of its labelled personas that ship it."""
    out: dict[str, float | None] = {}
    for item in reference:
        said = [lb.verdict for lb in item.reference.values() if lb.verdict != "abstain"]
        out[item.card.slug] = sum(v == "ship" for v in said) / len(said) if said else None
    return out
