"""Flow: review one tool with the five-persona panel. The work is `shipskip.usecases`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.runtime import flow_run, task_run
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.hashing import hash_objects
from pydantic import Field

from shipskip import costs, usecases
from shipskip.asking import ask_persona
from shipskip.cards import load_card
from shipskip.errors import BadParameter, BudgetReached, ProviderRejected, ShipskipError
from shipskip.models import Take, ToolCard, clean_text
from shipskip.orchestration import failed, one_line_parameter_errors, persona_limit
from shipskip.outcome import ReviewOutcome
from shipskip.render import ReviewedTool, review_markdown
from shipskip.review import Panel
from shipskip.settings import get_settings
from shipskip.store import Run, Store

# A persona whose provider failed every attempt is asked once more after a pause (Prefect shows
# it AwaitingRetry, then Retrying); failing again, it ends Failed, its abstention kept.
PERSONA_RETRIES = 1


# The name of the state a persona's task ends in when its own asking failed (its take, an
# abstention holding the error, is checkpointed): told apart from a task that broke by name.
PERSONA_FAILED = "PersonaFailed"


@dataclass
class PersonaPrompt(CachePolicy):
    """The part of a take's cache key its task's inputs do not carry: the persona's prompt hash and
    model, which the live panel knows (`describe`, given the persona)."""

    # (persona) -> (prompt hash, model). Given by name: CachePolicy's own fields come first.
    describe: Callable[[str], tuple[str, str]] | None = None

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        assert self.describe is not None, "PersonaPrompt(describe=...) names the persona's prompt and model"
        return hash_objects(*self.describe(inputs["persona"]), raise_on_failure=True)


class PrefectAsker:
    """The panel asked with a Prefect task per persona, so a flow run shows one task per persona,
    retried and cached by Prefect. A use case is handed the class and makes one for the panel
    it opens (`shipskip.asking.Asker`).

    As pydantic-ai's `PrefectModel` does, the task closes over the live objects (the panel's
    clients, the store) and takes only values: the card, the persona, the run, the reason. Its
    cache key composes those inputs with the persona's prompt hash and model (`PersonaPrompt`): one
    take per run, persona, prompt and model. A retried flow run finds the personas already answered
    in Prefect's result store; a rerun is a new run and asks again."""

    def __init__(self, panel: Panel, store: Store) -> None:
        self.panel, self.store = panel, store

        def persona_take(
            card: ToolCard, persona: str, run: Run, rerun_reason: str | None = None
        ) -> Take | State:
            take = ask_persona(panel, store, run, persona, card, rerun_reason)
            log_take(get_run_logger(), card.slug, take)
            if take.error:
                tries = f"{take.attempts} attempts, try {task_run.run_count} of {PERSONA_RETRIES + 1}"
                # The take (an abstention with the error) is checkpointed already; the state
                # carries only the message, so Prefect's log line stays one line.
                return Failed(name=PERSONA_FAILED, message=f"{persona} failed after {tries}: {take.error}")
            return take

        def retry_unless_unusable_or_stopping(task: Any, task_run: Any, state: State) -> bool:
            """A persona is asked once more after its provider failed it, but not when the provider
            refused us or was given up on (ProviderRejected, ProviderDown): that fails every
            persona alike, and asking again would only wait the retry delay to fail once more. Nor
            once its flow run is stopping (SIGTERM)."""
            refused = isinstance(state.data, ProviderRejected | BudgetReached)
            return not refused and not panel.stop.is_set()

        def describe_persona(persona: str) -> tuple[str, str]:
            return panel.prompts.prompt_hash(persona), panel.clients[persona].model

        self.take: Task[..., Take | State] = task(
            persona_take, cache_policy=INPUTS + PersonaPrompt(describe=describe_persona), persist_result=True,
            result_serializer="json", task_run_name="{persona}", retries=PERSONA_RETRIES,
            retry_delay_seconds=2, retry_condition_fn=retry_unless_unusable_or_stopping,
        )  # fmt: skip

    def ask(
        self, card: ToolCard, personas: list[str], run: Run, rerun_reason: str | None = None
    ) -> dict[str, Take]:
        futures = {p: self.take.submit(card, p, run, rerun_reason) for p in personas}
        for f in futures.values():
            f.wait()
        takes = {}
        for persona, f in futures.items():
            if f.state.is_failed() and f.state.name == PERSONA_FAILED:
                # The persona's own failure, kept as its take.
                takes[persona] = self.store.checkpoints(run)[persona]
                continue
            got = f.state.result(raise_on_failure=False)
            if isinstance(got, BaseException):
                raise got  # the task itself broke (a refused key, say): not a persona's failure
            takes[persona] = got
        return takes


def log_take(logger: Any, slug: str, take: Take) -> None:
    said = "abstained" if take.abstained else f"{take.verdict} {take.score}"
    logger.info(
        "%s · %s: %s · model %s · %d attempts · %d+%d tokens", slug, take.persona, said,
        clean_text(take.model), take.attempts, take.usage.prompt_tokens, take.usage.completion_tokens,
    )  # fmt: skip


def publish_review(
    out: ReviewOutcome, card: ToolCard, store: Store, what: str, reason: str | None = None
) -> None:
    """The review as a `review-SLUG` Markdown artifact of this flow run, through Prefect's
    public artifact API (inside a flow run it uses the run's own client)."""
    if out.skipped:
        return
    settings = get_settings()
    with store.reading():
        reviewed = ReviewedTool(
            card, tuple(out.takes), store.votes(out.slug), store.reviewed_at(out.slug),
            contested_above=settings.contested_above, given_verdict=out.verdict,
        )  # fmt: skip
    markdown = review_markdown(reviewed, what, reason)
    book = costs.PriceBook.of(costs.configured_prices(settings))
    markdown += f"\n\nCost: {costs.summarise(list(out.takes), book).text()}\n"
    create_markdown_artifact(markdown=markdown, key=f"review-{out.slug}", description=f"{what}: {card.name}")


# Threads for the personas; how many ask at once is SHIPSKIP_LLM_CONCURRENCY, held by the panel.
@one_line_parameter_errors
@flow(name="review-tool", task_runner=ThreadPoolTaskRunner(), log_prints=False)
def review_tool(
    card_path: Annotated[
        str | None, Field(description="Path to a tool card: YAML, JSON or Markdown.")
    ] = None,
    force: Annotated[bool, Field(description="Review again even if this exact card was reviewed.")] = False,
    db_path: Annotated[str | None, Field(description="DuckDB file; default SHIPSKIP_DB_PATH.")] = None,
    card: Annotated[ToolCard | None, Field(description="The card itself, read already (the CLI's).")] = None,
) -> ReviewOutcome | State:
    """Review one tool card and store the five takes.

    Args:
        card_path: Path to a tool card: YAML, JSON or Markdown with front matter.
        force: Review again even if this exact card was reviewed.
        db_path: DuckDB file; SHIPSKIP_DB_PATH by default.
        card: The card itself, instead of its path, when the caller has read it already.
    """
    settings = get_settings()
    try:
        if (card is None) == (card_path is None):
            raise BadParameter("card_path", "give a card's path or the card itself, one of the two")
        if card is None:
            card = load_card(Path(str(card_path)))  # before anything starts: a bad card costs nothing
        persona_slot = persona_limit(settings)
        store = Store.from_settings(settings, db_path)
        out = usecases.review_card(
            card, store, settings, force=force, asker=PrefectAsker, flow_run_id=flow_run.id,
            persona_slot=persona_slot,
        )  # fmt: skip
    except ShipskipError as exc:
        return failed(exc)
    publish_review(out, card, store, "panel review")
    return out
