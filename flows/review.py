"""Flow: review one tool with the five-persona panel. The work is `shipskip.usecases`."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate as ArtifactRequest
from prefect.context import TaskRunContext
from prefect.runtime import flow_run, task_run
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from shipskip import costs, usecases
from shipskip.cards import load_card
from shipskip.errors import BudgetReached, ProviderRejected, ShipskipError
from shipskip.models import Take, ToolCard, clean_text
from shipskip.orchestration import failed, one_line_parameter_errors, seat_limit
from shipskip.outcome import ReviewOutcome
from shipskip.render import ReviewedTool, review_markdown
from shipskip.review import Panel
from shipskip.settings import get_settings
from shipskip.store import Run, Store

# A seat whose provider failed every attempt is asked once more after a pause (Prefect shows
# it AwaitingRetry, then Retrying); failing again, it ends Failed, its abstention kept.
SEAT_RETRIES = 1


# The live objects a seat is asked with (a client pool, a database), for the tasks of this
# flow run only: Prefect's task runner copies the context into each task's thread, so the task
# itself takes only serialisable inputs and Prefect can key, cache and retry it.
_ASKING: ContextVar[tuple[Panel, Store]] = ContextVar("shipskip_asking")


# The name of the state a seat's task ends in when its own asking failed (its take, an
# abstention holding the error, is checkpointed): told apart from a task that broke by name.
SEAT_FAILED = "SeatFailed"


def seat_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One take per run, seat, prompt and model: a retried flow run finds the seats already
    answered in Prefect's result store; a rerun is a new run and asks again."""
    panel, _ = _ASKING.get()
    persona, run = parameters["persona"], parameters["run"]
    model = panel.clients[persona].model
    return f"take-{run.run_id}-{persona}-{panel.prompts.prompt_hash(persona)}-{model}"


def retry_unless_unusable_or_stopping(task: Any, task_run: Any, state: State) -> bool:
    """A seat is asked once more after its provider failed it, but not when the provider
    refused us or was given up on (ProviderRejected, ProviderDown): that fails every seat
    alike, and asking again would only wait the retry delay to fail once more. Nor once its
    flow run is stopping (SIGTERM)."""
    panel, _ = _ASKING.get()
    refused = isinstance(state.data, ProviderRejected | BudgetReached)
    return not refused and not panel.stop.is_set()


@task(
    cache_key_fn=seat_cache_key, persist_result=True, result_serializer="json",
    task_run_name="{persona}", retries=SEAT_RETRIES, retry_delay_seconds=2,
    retry_condition_fn=retry_unless_unusable_or_stopping,
)  # fmt: skip
def persona_take(card: ToolCard, persona: str, run: Run, reason: str | None = None) -> Take | State:
    panel, store = _ASKING.get()
    take = usecases.ask_seat(panel, store, run, persona, card, reason)
    log_take(get_run_logger(), card.slug, take)
    if take.error:
        tries = f"{take.attempts} attempts, try {task_run.run_count} of {SEAT_RETRIES + 1}"
        # The take (an abstention with the error) is checkpointed already; the state carries
        # only the message, so Prefect's log line stays one line.
        return Failed(name=SEAT_FAILED, message=f"{persona} failed after {tries}: {take.error}")
    return take


def log_take(logger: Any, slug: str, take: Take) -> None:
    said = "abstained" if take.abstained else f"{take.verdict} {take.score}"
    logger.info(
        "%s · %s: %s · model %s · %d attempts · %d+%d tokens", slug, take.persona, said,
        clean_text(take.model), take.attempts, take.usage.prompt_tokens, take.usage.completion_tokens,
    )  # fmt: skip


def ask_as_tasks(
    panel: Panel, store: Store, run: Run, personas: list[str], card: ToolCard, reason: str | None
) -> dict[str, Take]:
    """Each seat as a Prefect task, so the flow run shows one task per persona."""
    token = _ASKING.set((panel, store))
    try:
        futures = {p: persona_take.submit(card, p, run, reason) for p in personas}
        for f in futures.values():
            f.wait()
    finally:
        _ASKING.reset(token)
    takes = {}
    for persona, f in futures.items():
        if f.state.is_failed() and f.state.name == SEAT_FAILED:
            takes[persona] = store.checkpoints(run)[persona]  # the seat's own failure, kept as its take
            continue
        got = f.state.result(raise_on_failure=False)
        if isinstance(got, BaseException):
            raise got  # the task itself broke (a refused key, say): not a seat's failure
        takes[persona] = got
    return takes


def publish_review(
    out: ReviewOutcome,
    store: Store,
    what: str,
    reason: str | None = None,
    client: SyncPrefectClient | None = None,
) -> None:
    """The review as a `review-SLUG` Markdown artifact of this flow run. An ingest passes the
    one `client` it holds: Prefect's own helper builds a client, TLS context included, per call."""
    if out.skipped:
        return
    with store.reading():
        card = store.tool(out.slug)
        if card is None:
            return
        panel = ReviewedTool(
            card, tuple(out.takes), store.votes(out.slug), store.reviewed_at(out.slug),
            contested_above=get_settings().contested_above,
        )  # fmt: skip
    markdown = review_markdown(panel, what, reason)
    book = costs.PriceBook.of(costs.configured_prices(get_settings()))
    markdown += f"\n\nCost: {costs.summarise(list(out.takes), book).text()}\n"
    key, description = f"review-{out.slug}", f"{what}: {card.name}"
    if client is None:
        create_markdown_artifact(key=key, markdown=markdown, description=description)
        return
    client.create_artifact(
        ArtifactRequest(
            type="markdown", key=key, description=description, data=markdown, flow_run_id=flow_run.id
        )
    )


# Threads for the seats; how many ask at once is SHIPSKIP_LLM_CONCURRENCY, held by the panel.
@one_line_parameter_errors
@flow(name="review-tool", task_runner=ThreadPoolTaskRunner(), log_prints=False)
def review_tool(
    card_path: Annotated[str, Field(description="Path to a tool card: YAML, JSON or Markdown.")],
    force: Annotated[bool, Field(description="Review again even if this exact card was reviewed.")] = False,
    db_path: Annotated[str | None, Field(description="DuckDB file; default SHIPSKIP_DB_PATH.")] = None,
) -> ReviewOutcome | State:
    """Review one tool card and store the five takes.

    Args:
        card_path: Path to a tool card: YAML, JSON or Markdown with front matter.
        force: Review again even if this exact card was reviewed.
        db_path: DuckDB file; SHIPSKIP_DB_PATH by default.
    """
    settings = get_settings()
    try:
        card = load_card(Path(card_path))  # before anything starts: a bad card costs nothing
        seat_slot = seat_limit(settings)
        store = Store.from_settings(settings, db_path)
        out = usecases.review_card(
            card, store, settings, force=force, ask=ask_as_tasks, flow_run_id=flow_run.id, seat_slot=seat_slot
        )
    except ShipskipError as exc:
        return failed(exc)
    publish_review(out, store, "panel review")
    return out
