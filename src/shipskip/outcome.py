"""What a review flow returns to its caller."""

from __future__ import annotations

from pydantic import BaseModel

from .models import PanelVerdict, Take, ToolCard
from .panel import aggregate
from .store import Store


class ReviewOutcome(BaseModel):
    slug: str
    name: str
    skipped: bool
    resumed: int = 0
    takes: list[Take]
    verdict: PanelVerdict

    @classmethod
    def of(cls, card: ToolCard, takes: list[Take], resumed: int = 0) -> ReviewOutcome:
        return cls(
            slug=card.slug, name=card.name, skipped=False, resumed=resumed,
            takes=takes, verdict=aggregate(takes),
        )  # fmt: skip

    @classmethod
    def from_store(cls, store: Store, card: ToolCard, skipped: bool, resumed: int = 0) -> ReviewOutcome:
        takes = store.current_takes(card.slug)
        return cls(
            slug=card.slug, name=card.name, skipped=skipped, resumed=resumed,
            takes=takes, verdict=aggregate(takes),
        )  # fmt: skip
