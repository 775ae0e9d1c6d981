"""The shipskip command line: the reviews and the store's records. The commands that write
pages are in `cli_site`, those that judge the panel in `cli_eval`, all on the one app of
`cli_app`; what they print is `cli_output`'s."""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from typer.models import CommandInfo

from . import cli_eval, cli_site  # noqa: F401  (imported for the commands they register on app)
from . import progress as signals
from .cards import load_card
from .cli_app import OutputFormat, PersonaChoice, VoteChoice, app, check_out
from .cli_app import open_store as _store
from .cli_output import (
    DISK_FULL,
    console,
    current_settings_table,
    err,
    fail,
    history_table,
    prices_table,
    print_calibrations,
    print_cost,
    print_result,
    takes_table,
    user_errors,
    verdict_line,
)
from .cli_output import said as _said
from .errors import DiskFull, ShipskipError
from .models import Take, ToolCard, clean_text
from .orchestration import prefect_api
from .panel import aggregate
from .roster import personas
from .settings import get_settings
from .terminal import for_terminal

__all__ = ["app", "run"]


def flows_module(name: str) -> ModuleType:
    """A module of the Prefect flows, imported when a command runs one. An installed wheel holds
    them as `shipskip_flows`; a checkout as the folder `flows/` beside `src/` (on the path in an
    editable install), which keeps its name for prefect.yaml's entrypoints."""
    try:
        return importlib.import_module(f"shipskip_flows.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != "shipskip_flows":
            raise  # the package is there and something it imports is not: say so
    import flows

    return importlib.import_module(f"{flows.__name__}.{name}")


def _quiet_prefect_loggers() -> None:
    # Failures reach the user as one line from us; Prefect's own copy would add a traceback.
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _debug() -> bool:
    """SHIPSKIP_DEBUG as the settings read it (the environment or .env); an error too early
    for the settings to be read shows no traceback, as without it."""
    try:
        return get_settings().debug
    except ShipskipError:
        return False


def run() -> None:
    """Entry point: an unexpected failure prints one line, not a traceback (SHIPSKIP_DEBUG=1 shows it)."""

    try:
        app(standalone_mode=True)
    except SystemExit:
        # Output still buffered meets a full disk here, as a refusal, rather than at exit.
        try:
            sys.stdout.flush()
        except OSError as exc:
            if exc.errno in DISK_FULL:
                _refuse(DiskFull(exc.filename or "standard output"))
        raise
    except OSError as exc:
        if exc.errno not in DISK_FULL or _debug():
            raise
        _refuse(DiskFull(exc.filename or "writing output"))
    except ShipskipError as exc:
        # Raised outside any command's own handling (a bad setting read at start-up): still a
        # refusal, so one line and exit 2 like the rest.
        _refuse(exc)
    except Exception as exc:
        if _debug():
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        err.print(
            f"[red]error:[/] {type(exc).__name__}: {for_terminal(msg)}", highlight=False, soft_wrap=True
        )
        raise SystemExit(1) from None


def _refuse(exc: ShipskipError) -> None:
    """One line and exit 2 from the entry point. Standard output may be the full device: it is
    pointed at /dev/null first, so that the exit does not fail again flushing it."""
    import os

    with suppress(OSError):
        sys.stdout.flush()
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError):
        pass  # not a real file (a test runner's capture): nothing to flush at exit either
    err.print(f"[red]error:[/] {for_terminal(exc)}", highlight=False, soft_wrap=True)
    raise SystemExit(2) from None


@app.command()
def review(
    cards: Annotated[list[Path], typer.Argument(help="Tool card files (YAML, JSON or Markdown).")],
    force: Annotated[bool, typer.Option(help="Review again even if this card was reviewed.")] = False,
) -> None:
    """Run the panel on one or more tool cards and print each panel."""
    with user_errors():
        checked = [load_card(p) for p in cards]
    review_tool = flows_module("review").review_tool
    _quiet_prefect_loggers()
    with prefect_api():
        for card in checked:
            _review_one(card, force, review_tool)


def _review_one(card: ToolCard, force: bool, review_tool: Callable[..., Any]) -> None:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err,
        transient=True,
    ) as bar:
        job = bar.add_task(f"Panel reviewing {for_terminal(card.name)}", total=len(personas()))

        done: set[str] = set()

        def tick(slug: str, take: Take) -> None:
            label = _said(take)
            if take.error and take.persona not in done:
                label += " (provider failed; asking once more)"  # the flow's retry follows
            bar.console.print(f"  {for_terminal(take.persona.title())}: {label}", highlight=False)
            if take.persona not in done:  # a retried persona reports twice but counts once
                done.add(take.persona)
                bar.advance(job)

        with user_errors(), signals.listening(tick):
            out = review_tool(card=card, force=force)  # read once, above: never parsed again
    note = " (already reviewed; --force to review again)" if out.skipped else ""
    console.print(takes_table(f"{out.name}{note}", out.takes))
    console.print(verdict_line(out.verdict), highlight=False)  # as the review worked it out
    print_calibrations(out.takes)
    print_cost(out.takes)


@app.command(name="settings")
def settings_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's table of settings.")
    ] = False,
) -> None:
    """Print every setting's current value (secrets masked) and what it sets."""
    from .settings import ENV_PREFIX, settings_table

    if markdown:
        print(settings_table(), end="")
        return
    with user_errors():
        current = get_settings()
    console.print(current_settings_table(current, ENV_PREFIX))


@app.command()
def show(tool: Annotated[str, typer.Argument(help="Tool slug.")]) -> None:
    """Print the stored panel for a tool."""
    with user_errors():
        store = _store()
        card = store.tool(tool)
        if card is None:
            raise ShipskipError(f"no reviewed tool with slug '{tool}'")
        takes = store.current_takes(tool)
        labels = store.labels(tool)
    console.print(takes_table(card.name, takes))
    console.print(verdict_line(aggregate(takes, get_settings().contested_above)), highlight=False)
    print_calibrations(takes)
    print_cost(takes)
    for lb in labels:  # editors' own calls, beside the panel's
        console.print(for_terminal(f"{lb.persona.title()}: {lb.text} · {lb.editor}"), highlight=False)


@app.command()
def vote(
    tool: Annotated[str, typer.Argument(help="Tool slug.")],
    choice: Annotated[VoteChoice, typer.Argument(help="Your vote.", case_sensitive=False)],
    voter: Annotated[
        str | None, typer.Option(help="Who votes; one vote each, changeable. Default: your OS user name.")
    ] = None,
) -> None:
    """Record or change your community vote; pages show votes apart from the panel."""
    import getpass

    who = (voter or getpass.getuser()).strip()
    if not re.fullmatch(r"[\w.@+-]{1,64}", who):
        fail(ShipskipError(f"--voter: '{clean_text(who)[:64]}' must be 1-64 letters, digits or . @ + - _"))
    with user_errors():
        store = _store()
        changed = store.add_vote(tool, choice.value, who)
        votes = store.votes(tool)
    verb = "changed to" if changed else "recorded:"
    console.print(for_terminal(f"{tool}: {who}'s vote {verb} {choice.value}. {votes.text}"), highlight=False)


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Folder of cards, .jsonl file, feed file or URL.")],
) -> None:
    """Review every new or changed tool in a source, once (what the scheduled run does)."""
    from .usecases import ingest_inputs

    with user_errors():
        ingest_inputs(source)  # before the Prefect API or a model server starts
    review_new_tools = flows_module("scheduled").review_new_tools  # imports Prefect: after the check
    _quiet_prefect_loggers()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
        shown = for_terminal(source)
        job = bar.add_task(f"Ingesting {shown}", total=None)
        done: dict[str, int] = {}
        panel_size = len(personas())
        # Personas of several tools finish at once on their own threads: one tick at a time.
        ticking = threading.Lock()

        def tick(slug: str, take: Take) -> None:
            with ticking:
                done[slug] = done.get(slug, 0) + 1
                label = _said(take)
                said = for_terminal(f"{slug} · {take.persona.title()}: {label}")
                bar.console.print(f"  {said}", highlight=False)
                tools = sum(1 for n in done.values() if n >= panel_size)
                takes = sum(done.values())
                bar.update(job, description=f"Ingesting {shown}: {takes} takes, {tools} tools done")

        with user_errors(), prefect_api(), signals.listening(tick):
            # Called without return_state, a flow returns its own value, not a State.
            report: dict[str, list[str]] = review_new_tools(source=source)  # type: ignore[assignment]
    parts = [f"reviewed {len(report['reviewed'])}", f"unchanged {len(report['unchanged'])}",
             f"refused {len(report['refused'])}"]  # fmt: skip
    if report.get("busy"):
        parts.append(f"busy elsewhere {len(report['busy'])} (left for the process reviewing them)")
    if report.get("deferred"):
        parts.append(f"left {len(report['deferred'])} for the next run (SHIPSKIP_MAX_NEW_PER_RUN)")
    if report.get("batch_waiting"):
        parts.append(f"waiting for their batch {len(report['batch_waiting'])}")
    if report.get("cost"):
        parts.append(f"cost {report['cost']}")
    console.print(for_terminal(", ".join(parts)), highlight=False)
    if report.get("batch"):
        err.print(for_terminal(f"batch mode: {report['batch']}"), highlight=False, soft_wrap=True)
    if report.get("over_budget"):
        # One line: what the run spent of its cap, and what it left for the next run.
        err.print(
            for_terminal(f"budget reached: {report['budget']}; left {len(report['over_budget'])} tools "
                         "for the next run (finished takes are kept and resumed)"),
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    for line in report["refused"]:
        err.print(f"  refused: {for_terminal(line)}", highlight=False, soft_wrap=True)


@app.command()
def rerun(
    tool: Annotated[str, typer.Argument(help="Tool slug.")],
    persona: Annotated[PersonaChoice, typer.Argument(help="The persona to ask again.", case_sensitive=False)],
    reason: Annotated[str, typer.Option(help="Why the take is being redone (kept with it).")],
    model: Annotated[str | None, typer.Option(help="Model for this take.")] = None,
    prompt_version: Annotated[str | None, typer.Option(help="Persona prompt version.")] = None,
) -> None:
    """Run one persona again on one tool; the old take stays as history."""
    from .usecases import rerun_inputs, rerun_reason

    # Checked before anything starts (the Prefect API, the model server): an unknown tool or
    # prompt version, or a reason that says nothing, fails at once with one line. What is
    # stored is the reason with its control characters out, never the raw bytes.
    with user_errors():
        reason = rerun_reason(reason)
        settings = get_settings()
        rerun_inputs(
            tool, persona.value, reason, _store(), settings, model=model, prompt_version=prompt_version
        )
    # Only now: importing the flows imports Prefect, seconds a bad input need not wait.
    rerun_persona = flows_module("scheduled").rerun_persona
    _quiet_prefect_loggers()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
        bar.add_task(f"Asking the {persona.value.title()} about {for_terminal(tool)} again", total=None)

        def tick(slug: str, take: Take) -> None:
            label = _said(take)
            bar.console.print(f"  {for_terminal(take.persona.title())}: {label}", highlight=False)

        with user_errors(), prefect_api(), signals.listening(tick):
            rerun_persona(
                tool=tool, persona=persona.value, reason=reason, model=model, prompt_version=prompt_version
            )
    with user_errors():
        takes = _store().current_takes(tool)
    console.print(takes_table(tool, takes))
    console.print(verdict_line(aggregate(takes, get_settings().contested_above)), highlight=False)


@app.command()
def history(
    tool: Annotated[str, typer.Argument(help="Tool slug.")],
    persona: Annotated[str | None, typer.Argument(help="Only this persona.")] = None,
) -> None:
    """List every version of each take, with score changes and reasons."""
    with user_errors():
        rows = _store().history(tool, persona.lower() if persona else None)
    if not rows:
        fail(ShipskipError(f"no takes stored for '{tool}'"))
    console.print(history_table(tool, rows))


@app.command()
def serve(
    source: Annotated[str, typer.Option(help="Where new tools come from.")] = "data/inbox",
    cron: Annotated[str, typer.Option(help="Cron schedule, UTC.")] = "0 6 * * *",
) -> None:
    """Run the daily scheduled review on this machine (Ctrl-C or SIGTERM stops it); on a DuckLake
    store, its weekly upkeep too (Sundays 05:00 UTC, as prefect.yaml's weekly-maintenance)."""
    from prefect.schedules import Cron

    from .orchestration import serve as serve_deployments

    maintain_store = flows_module("maintain").maintain_store
    review_new_tools = flows_module("scheduled").review_new_tools

    # Its own name, so it never replaces the `daily-new-tools` deployment of prefect.yaml; one
    # run at a time, as there.
    deployment = review_new_tools.to_deployment(
        name="served-daily-new-tools", schedule=Cron(cron, timezone="UTC"), parameters={"source": source},
        concurrency_limit=1,
    )  # fmt: skip
    deployments = [deployment]
    if get_settings().catalog is not None:  # only a DuckLake needs upkeep
        deployments.append(
            maintain_store.to_deployment(
                name="served-weekly-maintenance",
                schedule=Cron("0 5 * * 0", timezone="UTC"),
                concurrency_limit=1,
            )
        )
    serve_deployments(
        *deployments,
        grace_s=get_settings().shutdown_grace_s,
        say=lambda line: err.print(for_terminal(line), highlight=False, soft_wrap=True),
    )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One SELECT query over the tables and views.")],
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (parquet needs one); csv and json print if unset.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
) -> None:
    """Run a read-only query: a table, CSV or JSON on stdout (pipe it), or a file with --out."""
    from .analytics import format_result, run_sql, write_result

    fmt = format.value
    with user_errors():
        if fmt == "parquet" and out is None:
            raise ShipskipError("--format parquet needs --out FILE")
        if out is None:
            res = run_sql(_store(), query, limit=limit if fmt == "table" else None)
        else:
            write_result(_store(), query, fmt, out, [check_out(out)])
    if out is not None:
        err.print(f"Wrote {for_terminal(out)}", highlight=False)
        return
    if fmt != "table":
        sys.stdout.write(format_result(res, fmt))
        return
    print_result(res, limit)


@app.command()
def maintain(
    keep_days: Annotated[
        int, typer.Option(min=0, help="Keep snapshots (time travel) and set-aside files this many days.")
    ] = 7,
) -> None:
    """On a DuckLake store: fold small files and inlined rows into larger files, expire old
    snapshots and delete the files nothing needs any more. Safe while reviews are running."""
    from .usecases import maintain as maintain_store

    with user_errors():
        done = maintain_store(_store(), keep_days)
    if done is None:
        console.print("Nothing to do: the single DuckDB file keeps itself compact.")
        return
    for k, v in done.items():
        console.print(f"{k.replace('_', ' ')}: {v}", highlight=False)


@app.command()
def export(
    to: Annotated[Path, typer.Option("--to", help="Folder for the Parquet files: new or empty.")],
    overwrite: Annotated[
        bool, typer.Option(help="Export into a folder that is not empty, replacing an earlier export there.")
    ] = False,
) -> None:
    """Write each table as a Parquet file, for use in other tools."""
    from .analytics import export as export_tables

    with user_errors():
        paths = export_tables(_store(), to, overwrite=overwrite)
    for p in paths:
        console.print(f"Wrote {for_terminal(p)}", highlight=False)


@app.command()
def prices() -> None:
    """List the model prices the cost views use (US dollars per million tokens), after loading
    the shipped ones and your file (SHIPSKIP_PRICES_PATH) into the store."""
    from .costs import sync_prices

    with user_errors():
        listed = sync_prices(_store(), get_settings())
    console.print(prices_table(listed))
    console.print('A model not listed is unpriced: its cost reads "unpriced", never 0.', highlight=False)


# `shipskip --help` lists the commands in the order they were written when all lived here,
# whichever module now defines each (Typer lists them in the order they were registered).
_HELP_ORDER = (
    "review", "settings_command", "show", "compare", "page", "reviewer", "digest", "vote", "ingest",
    "rerun", "history", "serve", "sql", "trends", "maintain", "export", "eval_", "calibrate", "site",
    "web", "prices", "label", "queue",
)  # fmt: skip


def _help_place(command: CommandInfo) -> int:
    name = getattr(command.callback, "__name__", "")
    return _HELP_ORDER.index(name) if name in _HELP_ORDER else len(_HELP_ORDER)


app.registered_commands.sort(key=_help_place)
