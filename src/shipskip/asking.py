"""Asking the panel: every persona of one card, each take checkpointed in its run.

A use case is handed an `Asker`, which it calls with the panel it opens and its store to get a
`PanelAsker`. The library's own is `ThreadAsker` (the personas on the panel's threads); the flows
hand in a Prefect one (`flows/review.py`: a task per persona), which closes over the same live
objects and gives its tasks values only. The library never calls up into `flows/`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from contextvars import copy_context
from typing import Protocol

from . import progress
from .models import Take, ToolCard
from .review import Panel
from .store import Run, Store


def ask_persona(
    panel: Panel, store: Store, run: Run, persona: str, card: ToolCard, rerun_reason: str | None
) -> Take:
    """One persona's take, checkpointed at once so a crash never asks for it again."""
    take = panel.ask(persona, card, rerun_reason)
    store.checkpoint(run, take)
    progress.emit(card.slug, take)
    return take


class PanelAsker(Protocol):
    """Asks personas of a card for their takes, each checkpointed in `run` as it comes."""

    panel: Panel

    def ask(
        self, card: ToolCard, personas: list[str], run: Run, rerun_reason: str | None = None
    ) -> dict[str, Take]: ...


# How a use case makes its asker once its panel is open: (panel, store) -> PanelAsker.
Asker = Callable[[Panel, Store], PanelAsker]


def in_context(
    pool: ThreadPoolExecutor, fn: Callable[..., object], *args: object, **kwargs: object
) -> Future:
    """`pool.submit`, run in a copy of the caller's context, so a flow's settings (its Prefect
    API) and logger reach the worker threads as they do Prefect's own task runner."""
    runner: Callable[..., object] = copy_context().run
    return pool.submit(runner, fn, *args, **kwargs)


class ThreadAsker:
    """The personas asked at once on the panel's threads: what commands without Prefect use."""

    def __init__(self, panel: Panel, store: Store) -> None:
        self.panel, self.store = panel, store

    def ask(
        self, card: ToolCard, personas: list[str], run: Run, rerun_reason: str | None = None
    ) -> dict[str, Take]:
        # The limit on calls in flight is the panel's (SHIPSKIP_LLM_CONCURRENCY); their pool
        # only has to be wide enough never to be the narrower bound.
        with ExitStack() as stack:
            pool = self.panel.pool or stack.enter_context(
                ThreadPoolExecutor(max_workers=max(1, len(personas)))
            )
            futures = [
                in_context(pool, ask_persona, self.panel, self.store, run, p, card, rerun_reason)
                for p in personas
            ]
            # Every persona has finished (or failed) before the review goes on, so one that fails
            # cannot leave another still writing checkpoints behind the run's back.
            wait(futures)
            return {t.persona: t for t in (f.result() for f in futures)}
