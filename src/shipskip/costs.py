"""What reviews cost in money: a price per model, the cost of a take, and a run's budget.

Prices are per million tokens, with cached input priced on its own. The shipped file
(`prices.toml` in the package) holds dated list prices of a few hosted models and the embedded
model at 0; the user's file (SHIPSKIP_PRICES_PATH) adds models or replaces entries. Both are
loaded into the store's `model_prices`, which the cost views read. A model with no price is
"unpriced": never 0, never blank.
"""

from __future__ import annotations

import re
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BudgetReached, InputError, SettingsError, describe_validation_error
from .models import Take, Usage
from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

# A provider reports a dated snapshot of a model (gpt-4o-mini-2024-07-18, ...-20241022); it is
# priced as the model without the date when it has no entry of its own. The views do the same.
_DATED = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")


# What a Batch API charges of the standard price: half, for every model OpenAI lists. Fixed
# by the provider, not tuned (migration 023's take_costs uses the same factor).
BATCH_DISCOUNT = 0.5


class Price(BaseModel):
    """One model's prices in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)
    as_of: date | None = None
    source: str = "shipped"

    def cost(self, usage: Usage) -> float:
        """Uncached input, cached input (at its own price, else the input price) and output;
        tokens answered through a Batch API at half the price (BATCH_DISCOUNT)."""
        direct = usage.prompt_tokens - usage.batch_prompt_tokens
        cached = min(usage.cached_tokens, direct)
        cached_price = self.input if self.cached_input is None else self.cached_input
        batch = usage.batch_prompt_tokens * self.input + usage.batch_completion_tokens * self.output
        return (
            (direct - cached) * self.input
            + cached * cached_price
            + (usage.completion_tokens - usage.batch_completion_tokens) * self.output
            + BATCH_DISCOUNT * batch
        ) / 1e6


def shipped_path() -> Path:
    return Path(str(resources.files("shipskip").joinpath("prices.toml")))


def read_prices(path: Path, source: str) -> list[Price]:
    """The prices in one TOML file; a bad file or entry is one line naming it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, "(file)", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, "(file)", f"not valid TOML: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict) or set(data) - {"models"}:
        raise InputError(path, "(file)", 'expected only [models."MODEL-ID"] tables')
    prices = []
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"models.{name}", "must be a table of prices")
        try:
            prices.append(Price.model_validate({**entry, "model": name, "source": source}))
        except ValidationError as exc:
            where, message = describe_validation_error(exc)
            raise InputError(path, f"models.{name}.{where}", message) from None
    return prices


def configured_prices(settings: Settings) -> list[Price]:
    """The shipped prices with the user's file over them (by model), sorted by model."""
    by_model = {p.model: p for p in read_prices(shipped_path(), "shipped")}
    own = settings.prices_path
    if own.is_file():
        by_model.update({p.model: p for p in read_prices(own, str(own))})
    return sorted(by_model.values(), key=lambda p: p.model)


@dataclass(frozen=True)
class PriceBook:
    """Prices looked up as the views look them up: the model's own entry, else its undated one."""

    prices: dict[str, Price]

    @classmethod
    def of(cls, prices: list[Price]) -> PriceBook:
        return cls({p.model: p for p in prices})

    def get(self, model: str) -> Price | None:
        return self.prices.get(model) or self.prices.get(_DATED.sub("", model))

    def take_cost(self, take: Take) -> float | None:
        price = self.get(take.model)
        return None if price is None else price.cost(take.usage)


def money(usd: float) -> str:
    """Dollars with enough places that a few cents of tokens do not read as $0.00."""
    if usd == 0:
        return "$0"
    return f"${usd:.2f}" if usd >= 1 else f"${usd:.6f}".rstrip("0")


@dataclass(frozen=True)
class CostSummary:
    """What a set of takes cost: dollars for the priced ones, and which models have no price."""

    usd: float
    unpriced: tuple[str, ...]
    priced_takes: int
    takes: int
    requests: int
    tokens: int

    def text(self) -> str:
        spent = f"{self.takes} takes, {self.requests} requests, {self.tokens:,} tokens"
        if not self.unpriced:
            return f"{money(self.usd)} ({spent})"
        models = ", ".join(self.unpriced)
        if not self.priced_takes:
            return f"unpriced (no price for {models}; {spent})"
        return f"{money(self.usd)} + unpriced (no price for {models}; {spent})"


def summarise(takes: list[Take], book: PriceBook) -> CostSummary:
    usd, unpriced, priced = 0.0, set(), 0
    for take in takes:
        cost = book.take_cost(take)
        if cost is None:
            unpriced.add(take.model)
        else:
            usd, priced = usd + cost, priced + 1
    return CostSummary(
        usd=usd,
        unpriced=tuple(sorted(unpriced)),
        priced_takes=priced,
        takes=len(takes),
        requests=sum(t.attempts for t in takes),
        tokens=sum(t.usage.prompt_tokens + t.usage.completion_tokens for t in takes),
    )


@dataclass
class Budget:
    """A run's spending cap (SHIPSKIP_MAX_COST_PER_RUN in dollars, SHIPSKIP_MAX_TOKENS_PER_RUN in
    tokens), shared by every persona of the run.

    A persona asks before it starts; it may not when what was spent, plus what the personas already
    in flight will likely spend (the mean take so far), would pass the cap. So the run stops
    starting work just under the cap rather than a wave of personas past it; a take already
    started is finished and kept. Before the first take ends nothing is known of a take's
    cost, and personas start up to the calls-in-flight limit.
    """

    max_usd: float | None
    max_tokens: int | None
    book: PriceBook
    spent_usd: float = 0.0
    spent_tokens: int = 0
    takes: int = 0
    in_flight: int = 0
    reached: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, book: PriceBook, models: list[str]) -> Budget | None:
        """The run's budget, or None when no cap is set. A cap in money with a model that has no
        price cannot be kept: refused before any request, naming the model."""
        if settings.max_cost_per_run is None and settings.max_tokens_per_run is None:
            return None
        if settings.max_cost_per_run is not None:
            missing = sorted({m for m in models if book.get(m) is None})
            if missing:
                raise SettingsError(
                    "SHIPSKIP_MAX_COST_PER_RUN",
                    f"no price for model {', '.join(missing)}: add it to {settings.prices_path} "
                    "(see `shipskip prices`), or cap tokens with SHIPSKIP_MAX_TOKENS_PER_RUN",
                )
        return cls(settings.max_cost_per_run, settings.max_tokens_per_run, book)

    def _over(self, usd: float, tokens: float) -> bool:
        return (self.max_usd is not None and usd >= self.max_usd) or (
            self.max_tokens is not None and tokens >= self.max_tokens
        )

    def start(self) -> None:
        """Before a persona is asked: raises BudgetReached when it may not start."""
        with self._lock:
            if not self.reached and self.takes:
                # What the personas in flight and this one will likely spend, at the mean so far.
                ahead = self.in_flight + 1
                usd = self.spent_usd + ahead * self.spent_usd / self.takes
                tokens = self.spent_tokens + ahead * self.spent_tokens / self.takes
                self.reached = self._over(usd, tokens)
            if self.reached:
                raise BudgetReached(self.line_spent())
            self.in_flight += 1

    def finished(self, take: Take | None) -> None:
        """After a persona was asked (its take, or None when it failed without one)."""
        with self._lock:
            self.in_flight -= 1
            if take is None:
                return
            self.takes += 1
            self.spent_usd += self.book.take_cost(take) or 0.0
            self.spent_tokens += take.usage.prompt_tokens + take.usage.completion_tokens
            self.reached = self.reached or self._over(self.spent_usd, self.spent_tokens)

    def line_spent(self) -> str:
        parts = []
        if self.max_usd is not None:
            parts.append(f"{money(self.spent_usd)} of {money(self.max_usd)}")
        if self.max_tokens is not None:
            parts.append(f"{self.spent_tokens:,} of {self.max_tokens:,} tokens")
        return "spent " + " and ".join(parts)


def sync_prices(store: Store, settings: Settings) -> list[Price]:
    """Load the configured prices into the store's model_prices (only rows that changed), so
    the cost views price with them; returns them."""
    prices = configured_prices(settings)
    store.set_prices([(p.model, p.input, p.cached_input, p.output, p.as_of) for p in prices])
    return prices
