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
    def of(cls, card: ToolCard, takes: list[Take], verdict: PanelVerdict, resumed: int = 0) -> ReviewOutcome:
        """A review's outcome, its verdict the one the review computed (`panel.aggregate`) and
        stored: the CLI and the artifact show it as it is, never working it out again."""
        return cls(
            slug=card.slug, name=card.name, skipped=False, resumed=resumed, takes=takes, verdict=verdict
        )

    @classmethod
    def from_store(
        cls, store: Store, card: ToolCard, skipped: bool, contested_above: float | None = None
    ) -> ReviewOutcome:
        takes = store.current_takes(card.slug)
        return cls(
            slug=card.slug, name=card.name, skipped=skipped,
            takes=takes, verdict=aggregate(takes, contested_above),
        )  # fmt: skip
