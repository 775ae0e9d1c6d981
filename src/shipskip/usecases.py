"""What shipskip does, as plain functions over settings and the store.

Reviewing a card (with resume), ingesting a source, rerunning one persona and rendering a
comparison live here. The Prefect flows in `flows/` wrap these and nothing else; commands that
need no orchestration call them directly. How the personas are asked is handed in (`asking.Asker`):
threads by default, a Prefect task per persona from a flow; the rest is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import batch, costs
from .asking import Asker, PanelAsker, ThreadAsker, in_context
from .errors import (
    BadParameter,
    BudgetReached,
    InputError,
    ProviderDown,
    ProviderRejected,
    SettingsError,
    ShipskipError,
    Stopped,
    UnknownTool,
)
from .models import Take, ToolCard, card_text
from .outcome import ReviewOutcome
from .panel import aggregate
from .personas import PromptSet, check_persona, load_prompts
from .publish import verdicts_shown, write_compare
from .quality import order_independent
from .review import SlotFactory, asked_model, open_panel
from .settings import Settings
from .sources import SOURCE_SUFFIXES, read_source
from .store import Store, ToolBusy
from .untrusted import MIN_REASON, REASON_TOO_SHORT


def _no_persona_answered(takes: list[Take]) -> str | None:
    """The first error when every persona failed: the provider is unusable, not the card."""
    if takes and all(t.error for t in takes):
        return takes[0].error
    return None


def review_card(
    card: ToolCard,
    store: Store,
    settings: Settings,
    *,
    force: bool = False,
    asker: Asker = ThreadAsker,
    asking: PanelAsker | None = None,
    flow_run_id: str | None = None,
    persona_slot: SlotFactory | None = None,
) -> ReviewOutcome:
    """Review one card: skip it if this content was reviewed, resume an interrupted run, ask the
    personas still missing, and commit the five takes together. With `asking` (an ingest's, made
    once for its one panel), its clients and model server are used; otherwise a panel is opened
    for this card alone and `asker` made for it."""
    prompts = asking.panel.prompts if asking else load_prompts(settings.prompts_dir)
    if asking is None:
        costs.sync_prices(store, settings)  # an ingest, which passes its asker, has already
    # Whether this exact card was reviewed, and whether its slug belongs to another tool, are
    # checked inside begin_run, under the same lock that starts the run, so two processes
    # cannot both find it new.
    run = store.begin_review(card, flow_run_id=flow_run_id, unless_reviewed=not force)
    if run is None:
        return ReviewOutcome.from_store(store, card, skipped=True, contested_above=settings.contested_above)
    takes = run.checkpoints() if run.resumed else {}
    todo = [p for p in prompts.personas if p not in takes]
    if todo:
        try:
            with ExitStack() as stack:
                if asking is None:
                    panel = stack.enter_context(
                        open_panel(settings, prompts, todo, persona_slot=persona_slot)
                    )
                    asking = asker(panel, store)
                takes.update(asking.ask(card, todo, run.run))
        except ProviderDown:
            # A dead provider: the takes it spoiled are not kept, the good ones are (the next
            # run resumes from them); the tool is not marked reviewed.
            run.drop_checkpoints([p for p, t in run.checkpoints().items() if t.error])
            run.release()
            raise
        except BaseException:
            run.release()  # keep its checkpoints; let the next run take it at once
            raise
    ordered = [takes[p] for p in prompts.personas]
    error = _no_persona_answered([takes[p] for p in todo])
    if error and len(todo) == len(ordered):
        # Five failures are not a review: keep nothing, mark nothing reviewed, and stop.
        run.abandon()
        raise ProviderRejected(f"no persona got a valid reply, so nothing was stored: {error}")
    # The panel's verdict, worked out once here: stored with the run, returned, shown.
    verdict = aggregate(ordered, settings.contested_above)
    run.commit(card, ordered, verdict)
    # A review's takes are the current ones now: no need to read them back.
    return ReviewOutcome.of(card, ordered, verdict, resumed=len(ordered) - len(todo))


@dataclass
class IngestReport:
    reviewed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    # Tools not started, or started and checkpointed, once the run's budget was reached.
    over_budget: list[str] = field(default_factory=list)
    # What the reviewed tools' takes cost (`costs.CostSummary.text`), and with a budget, what
    # was spent of it.
    cost: str = ""
    budget: str = ""
    # Batch mode: tools whose questions are still in a Batch API job, and what it did.
    batch_waiting: list[str] = field(default_factory=list)
    batch: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Tools in flight on a lake, per tool it takes to fill the calls (the file keeps 2): groups of
# 10-30 tools gave 44 requests/s in process against 28 with 4 (bench/ingest_bench.py --lake).
LAKE_FACTOR = 8


def tools_in_flight(settings: Settings, panel_size: int, lake: bool = False) -> int:
    """Tools reviewed at once: twice as many as it takes for their personas to fill the
    calls-in-flight setting (SHIPSKIP_LLM_CONCURRENCY), which the panel' clients enforce call
    by call. With only enough, the slots of a tool whose last persona is still out, or that is
    being stored, stood empty: 57 against 66 requests/s (bench/ingest_bench.py). On a lake,
    where runs start and commit in groups that each cost about the same whatever their size,
    LAKE_FACTOR times what fills them rather than twice: more tools wait in each group, so
    fewer groups a tool."""
    return (LAKE_FACTOR if lake else 2) * max(1, -(-settings.llm_concurrency // max(1, panel_size)))


def ingest(
    source: str,
    store: Store,
    settings: Settings,
    *,
    warn: Callable[[str], None] = lambda line: None,
    on_review: Callable[[ToolCard, ReviewOutcome], None] = lambda card, out: None,
    flow_run_id: str | None = None,
    persona_slot: SlotFactory | None = None,
    asker: Asker = ThreadAsker,
) -> IngestReport:
    """Review each new or changed tool of a source once; a bad entry costs that entry only.

    New tools are reviewed concurrently (`review_card` each), and one panel (one model server)
    and one asker made for it serve them all.
    """
    report = IngestReport()
    todo: list[ToolCard] = []
    entries = list(read_source(source, settings))
    done = store.reviewed_among([e.card for e in entries if e.card is not None])
    for entry in entries:
        if entry.card is None:
            warn(f"skipped {entry.error}")
            report.refused.append(entry.error or entry.where)
        elif entry.card.slug in done:
            report.unchanged.append(entry.card.slug)
        elif len(todo) >= settings.max_new_per_run:
            # Bounded runs: what is left waits for the next run.
            report.deferred.append(entry.card.slug)
        else:
            todo.append(entry.card)
    prompts = load_prompts(settings.prompts_dir)
    batched: dict[str, dict[str, Any]] = {}
    if todo and settings.batch:
        if settings.scoring != "checklist":
            raise SettingsError(
                "SHIPSKIP_BATCH", "batches checklist questions: set SHIPSKIP_SCORING=checklist"
            )
        plan = batch.prepare(todo, store, settings, prompts)
        todo, batched = plan.ready, plan.answers
        report.batch_waiting, report.batch = plan.waiting, plan.line()
    if not todo:
        return report
    book = costs.PriceBook.of(costs.sync_prices(store, settings))
    # Before any request: a cap in money with an unpriced model is refused here.
    budget = costs.Budget.from_settings(settings, book, [asked_model(settings, p) for p in prompts.personas])
    spent: list[Take] = []

    def within_budget(card: ToolCard, asking: PanelAsker) -> ReviewOutcome:
        if budget is not None and budget.reached:
            raise BudgetReached(budget.line_spent())  # not started: nothing to keep
        return review_card(card, store, settings, asking=asking, flow_run_id=flow_run_id)

    with (
        open_panel(settings, prompts, persona_slot=persona_slot, budget=budget) as panel,
        ThreadPoolExecutor(
            max_workers=tools_in_flight(settings, len(prompts.personas), lake=store.lake is not None)
        ) as pool,
    ):
        panel.batched = batched
        asking = asker(panel, store)

        def review_all(cards: list[ToolCard]) -> list[tuple[ToolCard, ToolBusy]]:
            """Review the cards concurrently; those another live process holds come back."""
            futures = {in_context(pool, within_budget, card, asking): card for card in cards}
            held = []
            try:
                for future in as_completed(futures):
                    card = futures[future]
                    try:
                        out = future.result()
                    except ToolBusy as exc:
                        held.append((card, exc))
                        continue
                    except BudgetReached:
                        # Its finished takes are checkpointed; the next run resumes from them.
                        report.over_budget.append(card.slug)
                        continue
                    except (ProviderRejected, Stopped):
                        raise
                    except ShipskipError as exc:
                        warn(f"skipped {card.slug}: {exc}")
                        report.refused.append(str(exc))
                        continue
                    (report.unchanged if out.skipped else report.reviewed).append(card.slug)
                    if not out.skipped:
                        spent.extend(out.takes)
                    on_review(card, out)
            except BaseException as exc:
                # The provider refuses every tool alike (ProviderRejected): start no more tools,
                # and mark nothing more reviewed. The process is stopping (SIGTERM, Ctrl-C): also
                # stop the personas in flight before their next call; their finished takes are
                # checkpointed and the next run resumes from them.
                for f in futures:
                    f.cancel()
                if not isinstance(exc, ProviderRejected):
                    panel.stop.set()
                raise
            return held

        held = review_all(todo)
        # A tool another process holds is looked at again until the wait runs out: by then its
        # holder has committed it (it reads as unchanged) or died (its run is taken over here).
        deadline = time.monotonic() + settings.busy_wait_s
        pause = 0.5
        while held and time.monotonic() + pause < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            held = review_all([card for card, _ in held])
        for card, exc in held:
            warn(f"left {card.slug}: {exc}")
            report.busy.append(card.slug)
        store.sweep_leases()
    report.cost = costs.summarise(spent, book).text()
    if budget is not None and report.over_budget:
        report.budget = budget.line_spent()
    # Reports list tools in source order, whatever order they finished in.
    order = {c.slug: i for i, c in enumerate(todo)}
    for name in ("reviewed", "busy", "over_budget"):
        getattr(report, name).sort(key=lambda slug: order.get(slug, 0))
    return report


def rerun_reason(reason: str) -> str:
    """An editor's reason for a rerun as it is stored and shown: normalised like card text
    (escape sequences, control, zero-width and bidi characters out, whitespace folded), and
    refused when fewer than 3 characters are left."""
    text = card_text(reason)
    if len(text) < MIN_REASON:
        raise InputError("rerun", "--reason", REASON_TOO_SHORT)
    return text


@dataclass(frozen=True)
class RerunInputs:
    """A rerun's inputs as checked (`rerun_inputs`): the tool's card, the persona, the reason as
    stored, the prompts with the asked version, and another model, if one was asked for."""

    card: ToolCard
    persona: str
    rerun_reason: str
    prompts: PromptSet
    model: str | None = None


def rerun_inputs(
    tool: str,
    persona: str,
    reason: str,
    store: Store,
    settings: Settings,
    *,
    model: str | None = None,
    prompt_version: str | None = None,
) -> RerunInputs:
    """A rerun's inputs, checked before anything starts (a Prefect API, a model server). Raises
    a typed ShipskipError naming the first bad input."""
    reason = rerun_reason(reason)
    if model is not None and not model.strip():
        raise BadParameter("model", "names no model; leave it out for the seat's own")
    # The personas first: an unknown one needs no database, and its archived versions are its own.
    check_persona(settings.prompts_dir, persona)
    card = store.tool(tool)
    if card is None:
        raise UnknownTool(tool)
    prompts = load_prompts(settings.prompts_dir, versions={persona: prompt_version})
    return RerunInputs(card, persona, reason, prompts, model)


def ingest_inputs(source: str) -> None:
    """An ingest's source, checked before anything starts: a URL, a folder, or a file of a
    kind `read_source` reads. Its entries are checked one by one as it is read."""
    if source.startswith(("http://", "https://")):
        return
    path = Path(source)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in SOURCE_SUFFIXES):
        return
    raise BadParameter("source", f"'{source}' is not a folder, .jsonl file, feed file or URL that exists")


def rerun(
    inputs: RerunInputs,
    store: Store,
    settings: Settings,
    *,
    asker: Asker = ThreadAsker,
    persona_slot: SlotFactory | None = None,
) -> Take:
    """One persona again on one tool, its inputs checked already (`rerun_inputs`): the new take
    becomes current, the old one stays as history. A failure keeps the current take, is
    recorded in history, and raises."""
    card, persona, reason, prompts, model = (
        inputs.card, inputs.persona, inputs.rerun_reason, inputs.prompts, inputs.model
    )  # fmt: skip
    costs.sync_prices(store, settings)  # the cost views price this take
    run = store.begin_review(card, kind="rerun", rerun_reason=reason)
    assert run is not None  # only a review can find its card already done
    with open_panel(settings, prompts, [persona], model_override=model, persona_slot=persona_slot) as panel:
        try:
            take = asker(panel, store).ask(card, [persona], run.run, reason)[persona]
        except ProviderDown as exc:
            # A provider given up on fails the rerun like any other failure, its line the error.
            take = Take.abstention(
                persona, "the provider is not answering", error=str(exc), rerun_reason=reason,
                model=panel.clients[persona].model, prompt_version=prompts.personas[persona].version,
                prompt_hash=prompts.prompt_hash(persona),
            )  # fmt: skip
    if take.error:
        run.fail(take, reason)
        raise ShipskipError(
            f"rerun of {persona} on {card.slug} failed, the current take is kept: {take.error}"
        )
    run.commit(card, [take])
    return take


@dataclass(frozen=True)
class Comparison:
    path: Path
    markdown: str
    order_independent: bool
    names: tuple[str, str]
    files: tuple[Path, ...] = ()  # every file written: the page, its .md, the tool pages it links to


def compare(store: Store, settings: Settings, tool_a: str, tool_b: str) -> Comparison:
    """Write the comparison page, and check its verdicts do not depend on which tool is first."""
    from .render import scorecard_markdown

    files: list[Path] = []
    path, panels = write_compare(store, settings.out_dir, tool_a, tool_b, files)
    # The panels the page was rendered from, in both orders: no second read of the store, and
    # no rendered page read back.
    stable = order_independent(verdicts_shown(panels), verdicts_shown(panels[::-1]))
    names = (panels[0].card.name, panels[1].card.name)
    return Comparison(path, scorecard_markdown(panels), stable, names, tuple(files))


def maintain(store: Store, keep_days: int) -> dict[str, int] | None:
    """The store's upkeep (`Store.maintain`): what it did on a DuckLake, None on the single file."""
    store.init()
    return store.maintain(keep_days)
