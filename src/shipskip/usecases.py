"""What shipskip does, as plain functions over settings and the store.

Reviewing a card (with resume), ingesting a source, rerunning one persona and rendering a
comparison live here. The Prefect flows in `flows/` wrap these and nothing else; commands that
need no orchestration call them directly. How the seats are asked is a parameter (`AskSeats`):
threads here, Prefect tasks in a flow.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import progress
from .errors import ShipskipError
from .llm import ProviderRejected
from .models import Take, ToolCard
from .outcome import ReviewOutcome
from .personas import load_prompts
from .publish import compare_both_orders, verdicts_by_tool, write_compare
from .quality import order_independent
from .review import Panel, open_panel
from .settings import Settings
from .sources import read_source
from .store import Run, Store, ToolBusy, check_identity

OnTake = Callable[[str, Take], None]


def ask_seat(panel: Panel, store: Store, run: Run, persona: str, card: ToolCard, reason: str | None) -> Take:
    """One seat's take, checkpointed at once so a crash never asks for it again."""
    take = panel.take(persona, card, reason)
    store.checkpoint(run, take)
    progress.emit(card.slug, take)
    return take


# (panel, store, run, personas, card, reason) -> the takes of those personas.
AskSeats = Callable[[Panel, Store, Run, list[str], ToolCard, "str | None"], dict[str, Take]]


def ask_in_threads(
    panel: Panel, store: Store, run: Run, personas: list[str], card: ToolCard, reason: str | None
) -> dict[str, Take]:
    # The provider-wide limit on calls in flight is the clients' shared limiter; this pool
    # only has to be wide enough never to be the narrower bound.
    with ThreadPoolExecutor(max_workers=max(1, len(personas))) as pool:
        futures = [pool.submit(ask_seat, panel, store, run, p, card, reason) for p in personas]
        return {t.persona: t for t in (f.result() for f in futures)}


def _no_seat_answered(takes: list[Take]) -> str | None:
    """The first error when every seat failed: the provider is unusable, not the card."""
    if takes and all(t.error for t in takes):
        return takes[0].error
    return None


def review_card(
    card: ToolCard,
    store: Store,
    settings: Settings,
    *,
    force: bool = False,
    ask: AskSeats = ask_in_threads,
    flow_run_id: str | None = None,
) -> ReviewOutcome:
    """Review one card: skip it if this content was reviewed, resume an interrupted run, ask the
    seats still missing, and commit the five takes together."""
    check_identity(store, card)
    if not force and store.is_reviewed(card):
        return ReviewOutcome.from_store(store, card, skipped=True)
    prompts = load_prompts(settings.prompts_dir)
    run = store.begin_run(card, flow_run_id=flow_run_id, unless_reviewed=not force)
    if run is None:  # another process finished this exact card meanwhile
        return ReviewOutcome.from_store(store, card, skipped=True)
    takes = store.checkpoints(run)
    todo = [p for p in prompts.personas if p not in takes]
    if todo:
        with open_panel(settings, prompts, todo) as panel:
            takes.update(ask(panel, store, run, todo, card, None))
    ordered = [takes[p] for p in prompts.personas]
    error = _no_seat_answered([takes[p] for p in todo])
    if error and len(todo) == len(ordered):
        # Five failures are not a review: keep nothing, mark nothing reviewed, and stop.
        store.abandon_run(run)
        raise ProviderRejected(f"no seat got a valid reply, so nothing was stored: {error}")
    store.commit_review(run, card, ordered)
    return ReviewOutcome.from_store(store, card, skipped=False, resumed=len(ordered) - len(todo))


@dataclass
class IngestReport:
    reviewed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return dict(self.__dict__)


def ingest(
    source: str,
    store: Store,
    settings: Settings,
    *,
    review: Callable[[ToolCard], ReviewOutcome] | None = None,
    warn: Callable[[str], None] = lambda line: None,
) -> IngestReport:
    """Review each new or changed tool of a source once; a bad entry costs that entry only."""
    review = review or (lambda card: review_card(card, store, settings))
    report = IngestReport()
    for entry in read_source(source):
        if entry.card is None:
            warn(f"skipped {entry.error}")
            report.refused.append(entry.error or entry.where)
            continue
        # Bounded runs: what is left waits for the next run (unchanged cards cost nothing).
        if len(report.reviewed) >= settings.max_new_per_run and not store.is_reviewed(entry.card):
            report.deferred.append(entry.card.slug)
            continue
        try:
            out = review(entry.card)
        except ProviderRejected:
            raise  # the provider refuses every tool alike: stop, and mark nothing reviewed
        except ToolBusy as exc:
            warn(f"left {entry.card.slug}: {exc}")
            report.busy.append(entry.card.slug)
            continue
        except ShipskipError as exc:
            warn(f"skipped {entry.where}: {exc}")
            report.refused.append(str(exc))
            continue
        (report.unchanged if out.skipped else report.reviewed).append(entry.card.slug)
    return report


def rerun(
    tool: str,
    persona: str,
    reason: str,
    store: Store,
    settings: Settings,
    *,
    model: str | None = None,
    prompt_version: str | None = None,
    ask: AskSeats = ask_in_threads,
) -> Take:
    """One persona again on one tool: the new take becomes current, the old one stays as history.
    A failure keeps the current take, is recorded in history, and raises."""
    card = store.tool(tool)
    if card is None:
        raise ShipskipError(f"no reviewed tool with slug '{tool}'")
    prompts = load_prompts(settings.prompts_dir, versions={persona: prompt_version})
    if persona not in prompts.personas:
        raise ShipskipError(f"unknown persona '{persona}' (one of {', '.join(prompts.personas)})")
    run = store.begin_run(card, kind="rerun", reason=reason)
    assert run is not None  # only a review can find its card already done
    with open_panel(settings, prompts, [persona], model_override=model) as panel:
        take = ask(panel, store, run, [persona], card, reason)[persona]
    if take.error:
        store.fail_rerun(run, take, reason)
        raise ShipskipError(f"rerun of {persona} on {tool} failed, the current take is kept: {take.error}")
    store.commit_review(run, card, [take])
    return take


@dataclass(frozen=True)
class Comparison:
    path: Path
    markdown: str
    order_independent: bool
    names: tuple[str, str]


def compare(store: Store, settings: Settings, tool_a: str, tool_b: str) -> Comparison:
    """Write the comparison page, and check its verdicts do not depend on which tool is first."""
    from .render import scorecard_markdown

    path, panels = write_compare(store, settings.out_dir, tool_a, tool_b)
    stable = order_independent(*(verdicts_by_tool(p) for p in compare_both_orders(store, tool_a, tool_b)))
    return Comparison(path, scorecard_markdown(panels), stable, (panels[0].card.name, panels[1].card.name))

