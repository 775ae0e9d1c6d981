"""Flows for scheduled runs and editors: review what is new in a source; rerun one persona."""

from __future__ import annotations

from typing import Annotated

from prefect import Flow, flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from shipskip import usecases
from shipskip.asking import Asker, ThreadAsker
from shipskip.errors import ShipskipError
from shipskip.models import Take, ToolCard
from shipskip.orchestration import failed, one_line_parameter_errors, persona_limit, shared_api
from shipskip.outcome import ReviewOutcome
from shipskip.review import Panel
from shipskip.settings import get_settings
from shipskip.store import Run, Store

from .choices import PersonaName
from .review import PrefectAsker, log_take, publish_review
from .site import publish


class ToolSubflows(ThreadAsker):
    """An ingest's asker on a shared server: each tool's personas are asked (on the panel's
    threads, as without Prefect) inside a subflow run `review-SLUG`, so the UI shows each tool
    as its own run, with its own state and logs. The subflow closes over the panel and store;
    its parameters are values. Made once per ingest: defining a flow costs tens of ms."""

    def __init__(self, panel: Panel, store: Store) -> None:
        super().__init__(panel, store)
        in_threads = super().ask

        @flow(name="review-listed-tool", flow_run_name="review-{card.slug}")
        def review_listed_tool(
            card: ToolCard, personas: list[str], run: Run, rerun_reason: str | None = None
        ) -> dict[str, Take] | State:
            try:
                return in_threads(card, personas, run, rerun_reason)
            except ShipskipError as exc:
                # One line in its log; the ingest gets the error back as raised (stopped...).
                return failed(exc)

        self.subflow: Flow[..., dict[str, Take] | State] = review_listed_tool

    def ask(
        self, card: ToolCard, personas: list[str], run: Run, rerun_reason: str | None = None
    ) -> dict[str, Take]:
        # Called without return_state, a flow returns its own value, or raises its failure.
        return self.subflow(card, personas, run, rerun_reason)  # type: ignore[return-value]


@one_line_parameter_errors
@flow(name="review-new-tools")
def review_new_tools(
    source: Annotated[str, Field(description="Folder of cards, .jsonl file, or RSS/Atom feed file or URL.")],
) -> dict[str, list[str]] | State:
    """Review each new or changed tool of a source once; report bad entries and go on.

    On a Prefect server, each new tool is a subflow run, `review-SLUG`; tools are reviewed concurrently
    (SHIPSKIP_LLM_CONCURRENCY bounds the calls in flight), and each reviewed tool logs its
    takes and leaves a `review-SLUG` artifact.

    Args:
        source: Folder of cards, .jsonl file, or RSS/Atom feed file or URL.
    """
    settings = get_settings()
    try:
        usecases.ingest_inputs(source)  # before anything starts
        persona_slot = persona_limit(settings)
        store = Store.from_settings(settings)
    except ShipskipError as exc:
        return failed(exc)
    logger = get_run_logger()

    def reviewed(card: ToolCard, out: ReviewOutcome) -> None:
        for take in out.takes:
            log_take(logger, out.slug, take)
        publish_review(out, card, store, "panel review")

    # The one ingest of the library, with or without Prefect; only the asker is the flow's. A
    # subflow per tool shows in the UI of a shared server; on a temporary API of our own nobody
    # sees it, and it doubled the cost per tool (0.36 -> 0.78 s, bench/ingest_bench.py).
    asker: Asker = ToolSubflows if shared_api() else ThreadAsker
    try:
        report = usecases.ingest(
            source, store, settings, warn=logger.warning, on_review=reviewed, flow_run_id=flow_run.id,
            persona_slot=persona_slot, asker=asker,
        )  # fmt: skip
        # The reviews are committed; then the pages that show them, the index, category pages
        # and feed (only pages whose inputs changed), with a `site-pages` artifact.
        if store.exists():
            publish(store, settings, "daily review")
    except ShipskipError as exc:
        return failed(exc)
    return report.as_dict()


@one_line_parameter_errors
@flow(name="rerun-persona", task_runner=ThreadPoolTaskRunner())
def rerun_persona(
    tool: Annotated[str, Field(description="Slug of a reviewed tool.")],
    persona: Annotated[PersonaName, Field(description="The persona to ask again.")],
    reason: Annotated[str, Field(min_length=3, description="Why it is asked again; kept with the take.")],
    model: Annotated[str | None, Field(description="Another model for this take.")] = None,
    prompt_version: Annotated[str | None, Field(description="An archived persona prompt version.")] = None,
) -> dict | State:
    """One persona again on one tool; the new take becomes current, the old one stays as history.

    Args:
        tool: Slug of a reviewed tool.
        persona: The persona to ask again.
        reason: Why it is asked again; kept with the take and shown on pages.
        model: Another model for this take.
        prompt_version: An archived persona prompt version (prompts/personas/NAME@V.yaml).
    """
    settings = get_settings()
    try:
        store = Store.from_settings(settings)
        # An unknown tool, persona or prompt version fails here, before a model server starts.
        inputs = usecases.rerun_inputs(
            tool, persona, reason, store, settings, model=model, prompt_version=prompt_version
        )
        persona_slot = persona_limit(settings)
        take = usecases.rerun(inputs, store, settings, asker=PrefectAsker, persona_slot=persona_slot)
    except ShipskipError as exc:
        return failed(exc)
    publish_review(
        ReviewOutcome.from_store(store, inputs.card, skipped=False, contested_above=settings.contested_above),
        inputs.card, store, f"{persona} rerun",
        inputs.rerun_reason,  # as stored: control characters out
    )  # fmt: skip
    try:  # every page the tool appears on: its digests changed, no other page's did
        publish(store, settings, f"{persona} rerun of {tool}")
    except ShipskipError as exc:
        return failed(exc)
    return {"tool": tool, "persona": persona, "verdict": take.verdict, "score": take.score}
