"""Flows for scheduled runs and editors: review what is new in a source; rerun one persona."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.review import SEATS, ask_as_tasks
from shipskip import usecases
from shipskip.models import ToolCard
from shipskip.outcome import ReviewOutcome
from shipskip.settings import get_settings
from shipskip.store import Store


@flow(name="review-new-tools", task_runner=ThreadPoolTaskRunner(max_workers=SEATS))
def review_new_tools(source: str) -> dict[str, list[str]]:
    """Review each new or changed tool of a source once; report bad entries and go on."""
    logger = get_run_logger()
    settings = get_settings()
    store = Store(settings.db_path)

    def review(card: ToolCard) -> ReviewOutcome:
        return usecases.review_card(card, store, settings, ask=ask_as_tasks, flow_run_id=flow_run.id)

    return usecases.ingest(source, store, settings, review=review, warn=logger.warning).as_dict()


@flow(name="rerun-persona", task_runner=ThreadPoolTaskRunner(max_workers=1))
def rerun_persona(
    tool: str, persona: str, reason: str, model: str | None = None, prompt_version: str | None = None
) -> dict:
    """One persona again on one tool; the new take becomes current, the old one stays as history."""
    settings = get_settings()
    take = usecases.rerun(
        tool, persona, reason, Store(settings.db_path), settings,
        model=model, prompt_version=prompt_version, ask=ask_as_tasks,
    )  # fmt: skip
    return {"tool": tool, "persona": persona, "verdict": take.verdict, "score": take.score}
