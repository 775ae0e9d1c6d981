"""Flow: review one tool with the five-persona panel and store the takes."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from shipskip import progress
from shipskip.cards import load_card
from shipskip.models import Take, ToolCard
from shipskip.outcome import ReviewOutcome
from shipskip.personas import load_prompts
from shipskip.review import Panel, open_panel
from shipskip.settings import get_settings
from shipskip.store import Run, Store, check_identity


@task(cache_policy=NONE, task_run_name="{persona}")
def persona_take(
    panel: Panel, store: Store, run: Run, persona: str, card: ToolCard, reason: str | None = None
) -> Take:
    take = panel.take(persona, card, reason)
    store.checkpoint(run, take)
    progress.emit(card.slug, take)
    return take


@flow(name="review-tool", task_runner=ThreadPoolTaskRunner(max_workers=5), log_prints=False)
def review_tool(card_path: str, force: bool = False, db_path: str | None = None) -> ReviewOutcome:
    settings = get_settings()
    store = Store(db_path or settings.db_path)
    card = load_card(Path(card_path))
    return review_card(card, store, force=force)


def review_card(card: ToolCard, store: Store, force: bool = False) -> ReviewOutcome:
    """The body shared by review_tool and review_new_tools: resume, ask the rest, commit."""
    settings = get_settings()
    check_identity(store, card)
    if not force and store.is_reviewed(card):
        return ReviewOutcome.from_store(store, card, skipped=True)
    prompts = load_prompts(settings.prompts_dir)
    run = store.begin_run(card, flow_run_id=flow_run.id, unless_reviewed=not force)
    if run is None:  # another process finished this exact card meanwhile
        return ReviewOutcome.from_store(store, card, skipped=True)
    takes = store.checkpoints(run)
    todo = [p for p in prompts.personas if p not in takes]
    if todo:
        with open_panel(settings, prompts, todo) as panel:
            futures = [persona_take.submit(panel, store, run, p, card) for p in todo]
            takes.update({f.result().persona: f.result() for f in futures})
    store.commit_review(run, card, [takes[p] for p in prompts.personas])
    return ReviewOutcome.from_store(store, card, skipped=False, resumed=len(prompts.personas) - len(todo))
