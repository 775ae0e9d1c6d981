"""Flow: review one tool with the five-persona panel. The work is `shipskip.usecases`."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from shipskip import usecases
from shipskip.cards import load_card
from shipskip.models import Take, ToolCard
from shipskip.outcome import ReviewOutcome
from shipskip.review import Panel
from shipskip.settings import get_settings
from shipskip.store import Run, Store

# Seats of one tool in flight at once; the limit across tools is SHIPSKIP_LLM_CONCURRENCY,
# held by the clients' shared limiter.
SEATS = 5


# The panel and store are live objects (a client pool, a database path and lock): nothing to
# cache on, so no cache policy.
@task(cache_policy=NONE, task_run_name="{persona}")
def persona_take(
    panel: Panel, store: Store, run: Run, persona: str, card: ToolCard, reason: str | None = None
) -> Take:
    return usecases.ask_seat(panel, store, run, persona, card, reason)


def ask_as_tasks(
    panel: Panel, store: Store, run: Run, personas: list[str], card: ToolCard, reason: str | None
) -> dict[str, Take]:
    """Each seat as a Prefect task, so the flow run shows one task per persona."""
    futures = [persona_take.submit(panel, store, run, p, card, reason) for p in personas]
    return {t.persona: t for t in (f.result() for f in futures)}


@flow(name="review-tool", task_runner=ThreadPoolTaskRunner(max_workers=SEATS), log_prints=False)
def review_tool(card_path: str, force: bool = False, db_path: str | None = None) -> ReviewOutcome:
    """Review one tool card file (YAML, JSON or Markdown) and store the five takes."""
    settings = get_settings()
    store = Store(db_path or settings.db_path)
    card = load_card(Path(card_path))
    return usecases.review_card(card, store, settings, force=force, ask=ask_as_tasks, flow_run_id=flow_run.id)
