"""The shipskip command line."""

from __future__ import annotations

import errno
import importlib
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from . import progress as signals
from .cards import load_card
from .errors import DiskFull, ShipskipError, UnsafeWrite
from .models import PanelVerdict, Take, ToolCard, clean_text
from .orchestration import prefect_api
from .panel import aggregate
from .roster import personas
from .settings import get_settings, quiet_prefect
from .store import Store
from .terminal import for_terminal

# More columns than this print as vertical records rather than a table cut into slivers.
WIDE_COLUMNS = 8


def _persona_names() -> dict[str, str]:
    # The CLI's persona arguments are choices, made when the CLI is imported (the library reads
    # the roster only when asked). A setting that cannot be read leaves no choices here; every
    # command then says what is wrong with it in one line.
    try:
        return {name: name for name in personas()}
    except ShipskipError:
        return {}


PersonaChoice = StrEnum("PersonaChoice", _persona_names())  # type: ignore[misc]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    parquet = "parquet"


class VoteChoice(StrEnum):
    ship = "ship"
    skip = "skip"


def _plain_help_types() -> None:
    """Typer 0.29 prints each parameter's Python type in help: `<bool>` beside every flag
    (--force, --help), `<list[Path]>` beside a list of files. A flag takes no value and
    `cards...` already says "one or more", so those two show nothing; the rest keep theirs."""
    from typer import core

    option_type, argument_type = core.TyperOption.display_type_rich, core.TyperArgument.display_type_rich

    def option(self: core.TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else option_type(self, ctx)

    def argument(self: core.TyperArgument, ctx: typer.Context) -> str | None:
        return None if self.nargs != 1 else argument_type(self, ctx)

    # Typer's own hook, replaced so a flag shows no type; its declared types differ by a Context alias.
    core.TyperOption.display_type_rich = option  # type: ignore[method-assign,assignment]
    core.TyperArgument.display_type_rich = argument  # type: ignore[method-assign,assignment]


_plain_help_types()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="An LLM review panel for AI tools.",
)
# Emoji codes off: a name such as ":warning:" prints as written.
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def _store() -> Store:
    return Store.from_settings(get_settings())


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


def verdict_line(v: PanelVerdict) -> str:
    return f"{v.line} · {v.pct_text} panel ship"


def takes_table(title: str, takes: list[Take]) -> Table:
    table = Table(title=for_terminal(title), title_justify="left")
    table.add_column("Persona")
    table.add_column("Score", justify="right")
    table.add_column("Verdict")
    table.add_column("Take", overflow="fold")
    by_name = {t.persona: t for t in takes}
    for name in personas():
        t = by_name.get(name)
        if t is None or t.abstained:
            table.add_row(name.title(), "-", "-", "No panel take")
        else:
            # Stored text is cleaned on the way in; cleaned again here for takes stored before that.
            first = for_terminal(t.text) if t.text else ""
            flag = " [yellow](flagged)[/]" if t.suspicious else ""
            flag += " [yellow](composed from the checklist)[/]" if t.composed else ""
            if not t.counted and not t.suspicious:
                flag += f"\n[yellow]{for_terminal(t.not_counted_reason or 'not counted')}[/]"
            why = f"\n[dim]{for_terminal(t.why)}[/]" if t.why else ""
            note = f"\n[yellow]{for_terminal(t.calibration_note)}[/]" if t.calibration_note else ""
            table.add_row(name.title(), f"{t.score}/100", t.verdict or "", first + flag + why + note)
    return table


def calibration_line(takes: list[Take]) -> str | None:
    """One line under a panel whose scores come from a model with no fitted calibration."""
    notes = sorted({n for t in takes if (n := t.calibration_note)})
    if not notes:
        return None
    return "Scores " + "; ".join(notes) + ": label-free correction, not fitted (shipskip calibrate)"


def print_calibrations(takes: list[Take]) -> None:
    """Which calibration scored each seat, and a warning where a model had none fitted."""
    fitted = sorted({t.calibration for t in takes if t.calibration and not t.uncalibrated})
    if fitted:
        console.print(for_terminal("Calibrations: " + "; ".join(fitted)), style="dim", highlight=False)
    if line := calibration_line(takes):
        console.print(for_terminal(line), style="yellow", highlight=False)


def print_cost(takes: list[Take]) -> None:
    """What these takes cost at the configured prices; "unpriced" for a model with none."""
    from .costs import PriceBook, configured_prices, summarise

    with user_errors():
        book = PriceBook.of(configured_prices(get_settings()))
    console.print(for_terminal("Cost: " + summarise(takes, book).text()), style="dim", highlight=False)


def _said(take: Take) -> str:
    """A take in a progress line: its score and verdict, or that it abstained."""
    return "abstained" if take.abstained else f"{take.score}/100 {take.verdict}"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"shipskip {version('shipskip')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Review newly launched AI tools with a five-persona panel."""
    # Before any command imports Prefect: no analytics, quiet logs.
    quiet_prefect()


def _check_out(path: Path) -> Path:
    """Files a command writes where asked land only under the working directory or the output
    folder, so a typed path cannot overwrite anything elsewhere: the one of the two it is
    written under (`writes` then keeps it there, links and all)."""
    from .writes import locate

    roots = [get_settings().out_dir, Path.cwd()]
    try:
        return locate(path, roots)[0]
    except UnsafeWrite:
        raise UnsafeWrite(f"--out {path}", f"write under the working directory or {roots[0]}") from None


def _fail(exc: Exception) -> None:
    err.print(f"[red]error:[/] {for_terminal(exc)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


# A write that found no room: the device is full, or the user's quota is.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def user_errors() -> Iterator[None]:
    """A ShipskipError inside becomes one line on stderr and exit status 2."""
    try:
        yield
    except ShipskipError as exc:
        _fail(exc)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        _fail(DiskFull(exc.filename or "writing output"))
    except Exception as exc:
        # A flow parameter Prefect refused (a persona that is not one, a reason too short)
        # is the user's input, said in one line. Prefect is imported only by the commands that
        # run a flow, so an exception from any other cannot be one of its own.
        prefect_errors = sys.modules.get("prefect.exceptions")
        if prefect_errors is None or not isinstance(exc, prefect_errors.ParameterTypeError):
            raise
        problems = "; ".join(ln.strip(" -") for ln in str(exc).splitlines()[1:]) or str(exc)
        _fail(ShipskipError(f"invalid input: {problems}"))


def run() -> None:
    """Entry point: an unexpected failure prints one line, not a traceback (SHIPSKIP_DEBUG=1 shows it)."""
    import os

    try:
        app(standalone_mode=True)
    except SystemExit:
        # Output still buffered meets a full disk here, as a refusal, rather than at exit.
        try:
            sys.stdout.flush()
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                _refuse(DiskFull(exc.filename or "standard output"))
        raise
    except OSError as exc:
        if exc.errno not in _DISK_FULL or os.environ.get("SHIPSKIP_DEBUG"):
            raise
        _refuse(DiskFull(exc.filename or "writing output"))
    except ShipskipError as exc:
        # Raised outside any command's own handling (a bad setting read at start-up): still a
        # refusal, so one line and exit 2 like the rest.
        _refuse(exc)
    except Exception as exc:
        if os.environ.get("SHIPSKIP_DEBUG"):
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
            if take.persona not in done:  # a retried seat reports twice but counts once
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
    table = Table("Variable", "Value", "What it sets", show_lines=False)
    for name, field in type(current).model_fields.items():
        value = getattr(current, name)
        shown = "unset" if value is None else str(value)  # SecretStr prints as **********
        table.add_row(f"{ENV_PREFIX}{name.upper()}", for_terminal(shown), field.description or "")
    console.print(table)


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
def compare(
    tool_a: Annotated[str, typer.Argument(help="First tool slug.")],
    tool_b: Annotated[str, typer.Argument(help="Second tool slug.")],
) -> None:
    """Write out/compare/A-vs-B.html and .md from the stored panels."""
    from .usecases import compare as write_comparison

    # Rendering needs no orchestration: no Prefect server is started for it.
    with user_errors():
        done = write_comparison(_store(), get_settings(), tool_a, tool_b)
    console.print(f"Wrote {for_terminal(done.path)} (and .md)", highlight=False)
    others = [f for f in done.files if f not in (done.path, done.path.with_suffix(".md"))]
    if others:
        console.print(f"and {len(others)} files it links to:", highlight=False)
        for f in others:
            console.print(f"  {for_terminal(f)}", highlight=False)
    if not done.order_independent:
        err.print("warning: the verdicts depend on the order of the comparison", highlight=False)


@app.command()
def page(tool: Annotated[str, typer.Argument(help="Tool slug.")]) -> None:
    """Write the single-tool page out/tools/TOOL.html and .md."""
    from .publish import write_tool

    left_out: list[str] = []
    with user_errors():
        path, _ = write_tool(_store(), get_settings().out_dir, tool, left_out)
    console.print(f"Wrote {for_terminal(path)} (and .md)", highlight=False)
    _said_left_out(left_out)


def _said_left_out(lines: list[str]) -> None:
    """One line per tool a page left out because its stored row fails validation."""
    for line in dict.fromkeys(lines):
        err.print(f"  left out: {for_terminal(line)}", highlight=False, soft_wrap=True)


@app.command()
def reviewer(
    persona: Annotated[PersonaChoice, typer.Argument(help="The persona.", case_sensitive=False)],
) -> None:
    """Write a reviewer's page out/reviewers/PERSONA.html and .md: lens, record, ship rate by category."""
    from .publish import write_reviewer

    with user_errors():
        settings = get_settings()
        path = write_reviewer(_store(), settings.out_dir, settings.prompts_dir, persona.value)
    console.print(f"Wrote {for_terminal(path)} (and .md)", highlight=False)


@app.command()
def digest(
    week: Annotated[str | None, typer.Option(help="ISO week such as 2026-W48; default this week.")] = None,
) -> None:
    """Write the weekly digest of the panel's verdicts."""
    from .publish import current_week, write_digest

    left_out: list[str] = []
    with user_errors():
        path, panels = write_digest(_store(), get_settings().out_dir, week or current_week(), left_out)
    console.print(f"Wrote {for_terminal(path)} ({len(panels)} tools)", highlight=False)
    _said_left_out(left_out)


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
        _fail(ShipskipError(f"--voter: '{clean_text(who)[:64]}' must be 1-64 letters, digits or . @ + - _"))
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
        seats = len(personas())
        # Seats of several tools finish at once on their own threads: one tick at a time.
        ticking = threading.Lock()

        def tick(slug: str, take: Take) -> None:
            with ticking:
                done[slug] = done.get(slug, 0) + 1
                label = _said(take)
                said = for_terminal(f"{slug} · {take.persona.title()}: {label}")
                bar.console.print(f"  {said}", highlight=False)
                tools = sum(1 for n in done.values() if n >= seats)
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
        _fail(ShipskipError(f"no takes stored for '{tool}'"))
    table = Table(title=f"History of {for_terminal(tool)}", title_justify="left")
    for col in ("Persona", "v", "Score", "Change", "Verdict", "Model", "Prompt", "When", "Why"):
        table.add_column(col)
    for r in rows:
        delta = "" if r["delta"] is None or r["score"] is None else f"{r['delta']:+d}"
        failed = r["status"] == "failed"
        why = r["reason"] or r["kind"]
        if failed:
            why = f"{why}; failed, not kept: {r['error']}"
        elif r["verdict"] is None:
            why = f"{why}; abstained: {r['abstain_reason'] or r['error'] or 'no reason'}"
        # Every cell through for_terminal: stored text (a reason, a model name, an error) may
        # hold markup or escapes written before they were refused on the way in.
        table.add_row(*(for_terminal(cell) for cell in (
            r["persona"].title(), "-" if failed else str(r["version"]),
            "-" if r["score"] is None else str(r["score"]), delta,
            "failed" if failed else r["verdict"] or "abstain", r["model"], r["prompt_version"],
            str(r["created_at"])[:16], why,
        )))  # fmt: skip
    console.print(table)


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
            write_result(_store(), query, fmt, out, [_check_out(out)])
    if out is not None:
        err.print(f"Wrote {for_terminal(out)}", highlight=False)
        return
    if fmt != "table":
        sys.stdout.write(format_result(res, fmt))
        return
    if len(res.columns) > WIDE_COLUMNS:
        # Too wide for a table at terminal width: one record at a time, a field per line.
        for n, row in enumerate(res.rows, 1):
            console.print(f"[bold]-[ record {n} ]-[/]", highlight=False)
            width = max(len(c) for c in res.columns)
            for c, v in zip(res.columns, row, strict=True):
                value = for_terminal("" if v is None else v)
                console.print(f"{for_terminal(c):<{width}} | {value}", highlight=False)
    else:
        table = Table(show_lines=False)
        for c in res.columns:
            table.add_column(for_terminal(c), overflow="fold")
        for row in res.rows:
            table.add_row(*(for_terminal("" if v is None else v) for v in row))
        console.print(table)
    more = f"; more rows left out (--limit {limit})" if res.more else ""
    console.print(f"{len(res.rows)} rows shown{more}", highlight=False)


@app.command()
def trends(
    persona: Annotated[
        PersonaChoice | None, typer.Option(help="Only this persona.", case_sensitive=False)
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    since: Annotated[str | None, typer.Option(help="Only takes from this date (YYYY-MM-DD).")] = None,
    out: Annotated[Path | None, typer.Option(help="Page to write (default out/trends.html).")] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Count every take version, reruns included.")
    ] = False,
) -> None:
    """Write a trends page (inline SVG charts, takes per week) and print a summary per persona.

    Counts each tool's current take per seat, in the week it was made; --all-versions counts
    every version instead (the history: a seat rerun three times counts four times)."""
    from datetime import UTC, date, datetime

    from .analytics import score_distribution, trend_points, trend_summary
    from .embedded import EMBEDDED_MODEL
    from .render import trends_page
    from .writes import write_text

    try:
        start = date.fromisoformat(since) if since else None
    except ValueError:
        _fail(ShipskipError(f"--since '{since}' must be a date such as 2026-01-31"))
    target = out or get_settings().out_dir / "trends.html"
    with user_errors():
        seat = persona.value if persona else None
        if target.suffix != ".html":
            raise ShipskipError(f"--out {target}: the trends page is an .html file")
        root = _check_out(target)
        store = _store()
        store.init()
        with store.analysing():
            points = trend_points(store, seat, category, start, all_versions)
            distribution = score_distribution(store, seat)
            models = store.current_models()
    summary = trend_summary(points)
    filters = ", ".join(
        f"{k}: {v}" for k, v in (("persona", seat), ("category", category), ("since", since)) if v
    )
    counted = (
        "Every take version, reruns included, in the week each was made."
        if all_versions
        else "Current takes (each tool's latest take per seat), in the week each was made."
    )
    page = trends_page(
        points,
        summary,
        f"{counted} {f'Only {filters}.' if filters else 'All personas, categories and dates.'}",
        datetime.now(UTC).date(),
        distribution,
        # The same notes as the other pages: the demo model's, and each uncalibrated model's.
        demo=any(EMBEDDED_MODEL in m["model"] for m in models),
        notes=tuple(sorted(f"uncalibrated for {m['model']}" for m in models if m["uncalibrated"])),
    )
    with user_errors():
        write_text(root, target, page)
    err.print(f"Wrote {for_terminal(target)}", highlight=False)
    if not summary:
        console.print("No scored takes match these filters yet.")
    else:
        title = "Score trends, every take version" if all_versions else "Score trends, current takes"
        table = Table(title=title, title_justify="left")
        for col in ("Persona", "Weeks", "Scored", "Mean", "First wk", "Last wk", "Ship rate"):
            table.add_column(col)
        for s in summary:
            table.add_row(
                for_terminal(s["persona"].title()), str(s["weeks"]), str(s["scored"]), str(s["mean_score"]),
                str(s["first_week_mean"]), str(s["last_week_mean"]), f"{s['ship_rate']:.0%}",
            )  # fmt: skip
        console.print(table)


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


@app.command(name="eval")
def eval_(
    reference: Annotated[Path, typer.Argument(help="Labelled JSON Lines: {card, reference}.")],
    scoring: Annotated[
        str | None, typer.Option(help="checklist or holistic; default SHIPSKIP_SCORING (checklist).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Holistic only: takes drawn per persona, for stability.")] = 3,
    answers: Annotated[
        str | None, typer.Option(help="Checklist: reuse stored answers (eval id or prefix, or .jsonl file).")
    ] = None,
    takes: Annotated[
        int, typer.Option(help="Checklist: write takes for the first N tools and check them.")
    ] = 0,
    write_weights: Annotated[
        bool,
        typer.Option(help="Checklist: fit on the whole set and write the model's calibration file."),
    ] = False,
    held_out: Annotated[
        bool,
        typer.Option(
            "--held-out",
            help="Checklist: judge only the model's calibration as it stands, fitted on other tools "
            "(refused if the file shares a tool with its fit); nothing is fitted on these labels.",
        ),
    ] = False,
    save_answers: Annotated[
        Path | None,
        typer.Option(help="Checklist: also write the answers to this .jsonl file, as --answers reads them."),
    ] = None,
) -> None:
    """Score the panel against a labelled set; figures go to DuckDB (eval_runs, eval_items).

    Checklist figures are out-of-fold: each tool is judged by weights fitted without it.
    With --held-out, the model's own calibration is judged on tools its fit never saw.
    """
    from .evaluate import load_reference

    settings = get_settings()
    mode = scoring or settings.scoring
    if mode not in ("checklist", "holistic"):
        _fail(ShipskipError(f"--scoring must be checklist or holistic, not '{mode}'"))
    with user_errors():
        load_reference(reference)
    if mode == "holistic":
        if held_out or save_answers:
            _fail(ShipskipError("--held-out and --save-answers are for checklist scoring"))
        _eval_holistic(reference, samples)
        return
    from .evaluate import run_checklist_eval

    command = f"shipskip eval {reference}" + (f" --answers {answers}" if answers else "") + " --write-weights"
    with user_errors(), _EvalProgress() as shown:
        out = run_checklist_eval(
            settings, reference, answers_from=answers, takes=takes, write_weights=write_weights,
            held_out=held_out, save_answers=save_answers, command=command, on_seat=shown.seat,
            on_phase=shown.phase,
        )  # fmt: skip
    print_eval(out)
    if write_weights:
        console.print(
            f"Wrote the fitted calibration under {for_terminal(settings.calibrations_dir)}", highlight=False
        )
    if save_answers:
        console.print(f"Wrote the answers to {for_terminal(save_answers)}", highlight=False)


@app.command()
def calibrate(
    reference: Annotated[Path, typer.Argument(help="Labelled JSON Lines: {card, reference}.")] = Path(
        "data/reference/panel.jsonl"
    ),
    yes: Annotated[bool, typer.Option("--yes", help="Spend the requests without asking first.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=2, help="Only the first N reference tools (answers are kept for a longer run)."),
    ] = None,
    with_labels: Annotated[
        bool, typer.Option("--with-labels", help="Also fit on the editors' labels stored for this model.")
    ] = False,
) -> None:
    """Fit the configured model's own calibration on the labelled reference.

    Asks every checklist question on every reference card (stored as they arrive, so a killed
    run resumes without asking them again), prints out-of-fold figures with 95% intervals and
    writes the calibration under SHIPSKIP_CALIBRATIONS_DIR."""
    from .evaluate import load_reference, plan_calibration, run_calibration

    settings = get_settings()
    with user_errors():
        load_reference(reference)
        plan = plan_calibration(settings, reference, limit)
    console.print(
        f"Calibrating {for_terminal(plan.model)} on {plan.tools} tools: {plan.requests} requests, "
        f"about {plan.prompt_tokens:,} prompt tokens and {plan.answer_tokens:,} answer tokens"
        + (f" ({plan.answered} answers already stored)" if plan.answered else ""),
        highlight=False,
    )
    # A run that was started, and so agreed to, is resumed without asking again.
    if plan.requests and not (yes or plan.resuming) and not typer.confirm("Go on?", err=True):
        err.print("Nothing asked.")
        raise typer.Exit(1)
    command = f"shipskip calibrate {reference}" + (f" --limit {limit}" if limit else "")
    command += " --with-labels" if with_labels else ""
    with user_errors(), _EvalProgress() as shown:
        out = run_calibration(
            settings, reference, limit=limit, command=command, on_seat=shown.seat, on_phase=shown.phase,
            with_labels=with_labels,
        )  # fmt: skip
    if with_labels:
        console.print(f"editors' labels fitted with the reference: {out['editor_labels']}", highlight=False)
    print_eval(out)
    for name in ("out_of_fold", "persona_files"):
        console.print(
            f"{name.replace('_', ' ')}: scores at 0 or 100: {out['summary'][name]['extreme_share']}"
        )
    for path in out["written"]:
        console.print(f"Wrote {for_terminal(path)}", highlight=False)


class _EvalProgress:
    """A bar per phase of an evaluation (asking, writing takes), advanced seat by seat."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} seats"),
            TextColumn("{task.fields[last]}"), console=err, transient=True,
        )  # fmt: skip
        self.job: TaskID | None = None

    def __enter__(self) -> _EvalProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def phase(self, what: str, total: int) -> None:
        if self.job is not None:
            self.bar.remove_task(self.job)
        self.job = self.bar.add_task(what, total=total, last="")

    def seat(self, step: str, slug: str, persona: str) -> None:
        if self.job is not None:
            self.bar.update(self.job, advance=1, last=for_terminal(f"{step}: {slug} · {persona}"))


def print_eval(out: dict) -> None:
    s = out["summary"]
    for key, title in (
        ("out_of_fold", "out-of-fold (leave one tool out)"),
        ("persona_files", "the model's calibration"),
    ):
        if key not in s:  # a held-out judgement fits nothing, so has no out-of-fold figures
            continue
        fit = s[key].get("fit")
        print_figures(f"{title}{f' ({fit})' if fit else ''} · eval {out['eval_id'][:8]}", s[key])
    if "counted" in s:
        print_counted(s["counted"], s["out_of_fold"].get("intervals") or {})
    if "explanations" in s:
        figures = "  ".join(f"{k.replace('_', ' ')}: {v}" for k, v in s["explanations"].items())
        console.print(f"explanations: {figures}", highlight=False)
    if "takes" in s:
        console.print("takes: " + "  ".join(f"{k.replace('_', ' ')}: {v}" for k, v in s["takes"].items()))


def print_figures(title: str, fig: dict) -> None:
    """Per-seat agreement and the panel-level figures, as `shipskip eval` reports them; with
    bootstrap intervals where the figures carry them (out-of-fold)."""
    ci = fig.get("intervals") or {}

    def span(key: str) -> str:
        lo_hi = ci.get(key)
        return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}" if lo_hi else "-"

    def with_span(value: object, key: str) -> str:
        return f"{value} ({span(key)})" if ci else str(value)

    console.print(f"[bold]{for_terminal(title)}[/]", highlight=False)
    table = Table(title_justify="left", caption="(95% bootstrap interval)" if ci else None)
    for c in ("seat", "n", "agreement", "kappa", "mae", "abstained"):
        table.add_column(c)
    for name, f in fig["seats"].items():
        table.add_row(
            name, str(f["n"]), with_span(f["verdict_agreement"], f"{name}_agreement"),
            with_span(f["kappa"], f"{name}_kappa"), str(f["mae"]), f["abstained"],
        )  # fmt: skip
    console.print(table)
    console.print(
        "  ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in fig.items() if k not in ("seats", "intervals", "fit")
        ),
        highlight=False,
    )
    if ci:
        console.print(
            f"95% intervals, {ci['draws']} bootstrap draws of whole tools: panel ship pct spearman "
            f"{span('panel_ship_pct_spearman')}  ship balanced accuracy {span('ship_balanced_accuracy')}",
            highlight=False,
        )


def print_counted(c: dict, ci: dict) -> None:
    """The panel with every seat and with the seats that count (out-of-fold kappa at least
    COUNT_KAPPA_MIN), the flip chance's calibration, and accuracy against coverage."""

    def span(key: str) -> str:
        lo_hi = ci.get(key)
        return f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else ""

    console.print(
        f"[bold]counted seats (out-of-fold kappa ≥ {c['kappa_min']}): {', '.join(c['counted']) or 'none'}"
        f"; not counted: {', '.join(c['not_counted']) or 'none'}[/]",
        highlight=False,
    )
    table = Table(title_justify="left", caption="(95% bootstrap interval)")
    for col in ("panel", "ship pct spearman", "ship balanced accuracy", "coverage", "panels ship"):
        table.add_column(col)
    for key, name, prefix in (
        ("all_seats", "every seat", ""),
        ("counted_seats", "counted seats", "counted_"),
    ):
        f = c[key]
        table.add_row(
            name, f"{f['panel_ship_pct_spearman']}{span(prefix + 'panel_ship_pct_spearman')}",
            f"{f['ship_balanced_accuracy']}{span(prefix + 'ship_balanced_accuracy')}",
            str(f["coverage"]), f"{f['panels_ship']} (ref {f['reference_panels_ship']})",
        )  # fmt: skip
    console.print(table)
    flip = c["flip"]
    lo_hi = flip["ece_interval"]
    console.print(
        f"flip chance, out-of-fold, over {flip['panels']} panels: expected calibration error {flip['ece']}"
        + (f" ({lo_hi[0]:.3f}-{lo_hi[1]:.3f})" if lo_hi else "")
        + f"; mean chance {flip['mean_flip_chance']}, flipped {flip['flipped']}"
        f" (against the whole labelled panel: ECE {flip['ece_whole_panel']})",
        highlight=False,
    )
    bins = Table(title="flip chance by bin", title_justify="left")
    for col in ("chance", "panels", "mean chance", "flipped"):
        bins.add_column(col)
    for b in flip["bins"]:
        bins.add_row(b["bin"], str(b["panels"]), str(b["mean_chance"]), str(b["flipped"]))
    console.print(bins)
    sel = Table(
        title="accuracy against coverage (a verdict only where its flip chance ≤ cut)", title_justify="left"
    )
    for col in ("cut", "tools", "coverage", "accuracy", "balanced accuracy"):
        sel.add_column(col)
    for row in c["selective"]:
        sel.add_row(
            str(row["max_flip_chance"]), str(row["tools"]), str(row["coverage"]), str(row["accuracy"]),
            str(row["balanced_accuracy"]),
        )  # fmt: skip
    console.print(sel)


def _eval_holistic(reference: Path, samples: int) -> None:
    from .evaluate import run_holistic_eval

    with user_errors(), _EvalProgress() as shown:
        out = run_holistic_eval(get_settings(), reference, samples, on_seat=shown.seat, on_phase=shown.phase)
    table = Table(title=f"Panel quality (eval {out['eval_id'][:8]})", title_justify="left")
    cols = ["valid_first_attempt", "abstention_rate", "verdict_agreement", "kappa", "mae", "spearman",
            "flip_rate", "grounded_rate"]  # fmt: skip
    table.add_column("")
    for c in cols:
        table.add_column(c.replace("_", " "))
    for name, fig in out["summary"].items():
        if name != "targets":
            table.add_row(name, *("-" if fig.get(c) is None else str(fig[c]) for c in cols))
    console.print(table)
    console.print(
        f"similarity of takes on one tool: {out['summary']['overall']['similarity']}", highlight=False
    )
    print_figures("the same figures as the checklist's", out["summary"]["targets"])


@app.command()
def site() -> None:
    """Build the whole static site under OUT_DIR (index.html to open); only pages whose inputs
    changed since the last build are written. No Prefect server is started."""
    from .site import build

    with user_errors():
        settings = get_settings()
        report = build(_store(), settings)
    console.print(
        f"Site under {for_terminal(settings.out_dir)}: {len(report.written)} files written, "
        f"{len(report.removed)} removed, {report.unchanged} pages unchanged. "
        f"Open {for_terminal(settings.out_dir / 'index.html')}",
        highlight=False,
    )
    _said_left_out(report.left_out)


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the site in OUT_DIR and take readers' votes and Helpful marks (build it first with
    `shipskip site`). Tool pages are rendered from the store, so their counts are current."""
    from .web import serve as serve_web

    with user_errors():
        settings = get_settings()
        store = _store()
    console.print(f"Serving {for_terminal(settings.out_dir)} on http://{host}:{port}/ (Ctrl-C stops)",
                  highlight=False)  # fmt: skip
    serve_web(store, settings, host, port)


@app.command()
def prices() -> None:
    """List the model prices the cost views use (US dollars per million tokens), after loading
    the shipped ones and your file (SHIPSKIP_PRICES_PATH) into the store."""
    from .costs import sync_prices

    with user_errors():
        listed = sync_prices(_store(), get_settings())
    table = Table(title="Model prices, USD per million tokens", title_justify="left")
    for col, side in (("Model", "left"), ("Input", "right"), ("Cached input", "right"),
                      ("Output", "right"), ("As of", "left"), ("From", "left")):  # fmt: skip
        table.add_column(col, justify=side)  # type: ignore[arg-type]
    for p in listed:
        table.add_row(*(for_terminal(cell) for cell in (
            p.model, f"{p.input:g}", "as input" if p.cached_input is None else f"{p.cached_input:g}",
            f"{p.output:g}", str(p.as_of or "undated"), p.source,
        )))  # fmt: skip
    console.print(table)
    console.print('A model not listed is unpriced: its cost reads "unpriced", never 0.', highlight=False)


@app.command()
def label(
    tool: Annotated[str, typer.Argument(help="Tool slug.")],
    persona: Annotated[str, typer.Argument(help="The seat the call is on.")],
    verdict: Annotated[str, typer.Argument(help="Your call: ship, skip or abstain.")],
    reason: Annotated[str, typer.Option(help="Why (shown on pages beside the panel's take).")],
    score: Annotated[
        int | None, typer.Option(help="Your score out of 100, on the verdict's side of 60.")
    ] = None,
    editor: Annotated[str | None, typer.Option(help="Who labels. Default: your OS user name.")] = None,
) -> None:
    """Record an editor's own call on one seat; it supersedes that editor's earlier call there,
    which stays as history, and `calibrate --with-labels` learns from it."""
    from .labels import record_label

    with user_errors():
        got = record_label(
            tool, persona, verdict, reason, _store(), get_settings(), score=score, editor=editor
        )
    console.print(for_terminal(f"{tool} {persona}: {got.editor}: {got.text}"), highlight=False)


@app.command()
def queue(limit: Annotated[int, typer.Option(min=1, help="Tools listed.")] = 20) -> None:
    """The tools whose verdict is least certain (seats most evenly split, then scores nearest
    the ship line), for editors to label first; tools whose every seat is labelled are left out."""
    from .labels import queue as label_queue

    with user_errors():
        rows = label_queue(_store(), limit)
    table = Table(title="Label these first", title_justify="left")
    for c in ("tool", "verdict", "ship / skip / abstain", "mean distance to 60", "seats labelled"):
        table.add_column(c)
    for r in rows:
        table.add_row(
            for_terminal(r["slug"]), for_terminal(r["label"]), f"{r['ship']} / {r['skip']} / {r['abstain']}",
            "-" if r["mean_distance_to_line"] is None else str(r["mean_distance_to_line"]),
            f"{r['labelled']} of {r['seats']}",
        )  # fmt: skip
    console.print(table)
