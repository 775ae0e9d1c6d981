"""What the command line prints: tables, verdict lines, eval figures, wide records and the one
line a refused command ends with. The commands in `cli` decide what to do; this module only
says it (simonw/llm keeps the same split). Every piece of stored or typed text goes through
`for_terminal` on its way out."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from .errors import DiskFull, ShipskipError
from .models import PanelVerdict, Take
from .roster import personas
from .settings import get_settings
from .terminal import for_terminal

if TYPE_CHECKING:
    from .analytics import Result
    from .costs import Price

# Emoji codes off: a name such as ":warning:" prints as written.
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)

# More columns than this print as vertical records rather than a table cut into slivers.
WIDE_COLUMNS = 8

# A write that found no room: the device is full, or the user's quota is.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def fail(exc: Exception) -> NoReturn:
    """The command's one line on stderr, and exit status 2."""
    err.print(f"[red]error:[/] {for_terminal(exc)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """A ShipskipError inside becomes one line on stderr and exit status 2."""
    try:
        yield
    except ShipskipError as exc:
        fail(exc)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        fail(DiskFull(exc.filename or "writing output"))
    except Exception as exc:
        # A flow parameter Prefect refused (a persona that is not one, a reason too short)
        # is the user's input, said in one line. Prefect is imported only by the commands that
        # run a flow, so an exception from any other cannot be one of its own.
        prefect_errors = sys.modules.get("prefect.exceptions")
        if prefect_errors is None or not isinstance(exc, prefect_errors.ParameterTypeError):
            raise
        problems = "; ".join(ln.strip(" -") for ln in str(exc).splitlines()[1:]) or str(exc)
        fail(ShipskipError(f"invalid input: {problems}"))


# -- a panel -------------------------------------------------------------------------------


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
    """Which calibration scored each persona, and a warning where a model had none fitted."""
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


def said(take: Take) -> str:
    """A take in a progress line: its score and verdict, or that it abstained."""
    return "abstained" if take.abstained else f"{take.score}/100 {take.verdict}"


def said_left_out(lines: list[str]) -> None:
    """One line per tool a page left out because its stored row fails validation."""
    for line in dict.fromkeys(lines):
        err.print(f"  left out: {for_terminal(line)}", highlight=False, soft_wrap=True)


# -- stored records ------------------------------------------------------------------------


def current_settings_table(current: Any, prefix: str) -> Table:
    """Every setting's variable, current value (secrets print masked) and description."""
    table = Table("Variable", "Value", "What it sets", show_lines=False)
    for name, field in type(current).model_fields.items():
        value = getattr(current, name)
        shown = "unset" if value is None else str(value)  # SecretStr prints as **********
        table.add_row(f"{prefix}{name.upper()}", for_terminal(shown), field.description or "")
    return table


def history_table(tool: str, rows: list[dict[str, Any]]) -> Table:
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
    return table


def print_result(res: Result, limit: int) -> None:
    """A query's rows as a table, or one record at a time when it has too many columns."""
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


def print_trends(summary: list[dict[str, Any]], all_versions: bool) -> None:
    """The trends page's figures per persona, as a table."""
    if not summary:
        console.print("No scored takes match these filters yet.")
        return
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


def prices_table(listed: list[Price]) -> Table:
    table = Table(title="Model prices, USD per million tokens", title_justify="left")
    for col, side in (("Model", "left"), ("Input", "right"), ("Cached input", "right"),
                      ("Output", "right"), ("As of", "left"), ("From", "left")):  # fmt: skip
        table.add_column(col, justify=side)  # type: ignore[arg-type]
    for p in listed:
        table.add_row(*(for_terminal(cell) for cell in (
            p.model, f"{p.input:g}", "as input" if p.cached_input is None else f"{p.cached_input:g}",
            f"{p.output:g}", str(p.as_of or "undated"), p.source,
        )))  # fmt: skip
    return table


def queue_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Label these first", title_justify="left")
    for c in ("tool", "verdict", "ship / skip / abstain", "mean distance to 60", "personas labelled"):
        table.add_column(c)
    for r in rows:
        table.add_row(
            for_terminal(r["slug"]), for_terminal(r["label"]), f"{r['ship']} / {r['skip']} / {r['abstain']}",
            "-" if r["mean_distance_to_line"] is None else str(r["mean_distance_to_line"]),
            f"{r['labelled']} of {r['seats']}",
        )  # fmt: skip
    return table


# -- evaluations ---------------------------------------------------------------------------


class EvalProgress:
    """A bar per phase of an evaluation (asking, writing takes), advanced persona by persona."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} personas"),
            TextColumn("{task.fields[last]}"), console=err, transient=True,
        )  # fmt: skip
        self.job: TaskID | None = None

    def __enter__(self) -> EvalProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def phase(self, what: str, total: int) -> None:
        if self.job is not None:
            self.bar.remove_task(self.job)
        self.job = self.bar.add_task(what, total=total, last="")

    def persona_step(self, step: str, slug: str, persona: str) -> None:
        if self.job is not None:
            self.bar.update(self.job, advance=1, last=for_terminal(f"{step}: {slug} · {persona}"))


def as_fields(out: Any) -> dict[str, Any]:
    """An evaluation's result as plain fields by name, whether it came back as a dict or as a
    pydantic model: the printers read both the same way."""
    if isinstance(out, Mapping):
        return dict(out)
    return out.model_dump()


def print_eval(result: Any) -> None:
    out = as_fields(result)
    s = out["summary"]
    for key, title in (
        ("out_of_fold", "out-of-fold (leave one tool out)"),
        ("persona_files", "the model's calibration"),
    ):
        if s.get(key) is None:  # a held-out judgement fits nothing, so has no out-of-fold figures
            continue
        fit = s[key].get("fit")
        print_figures(f"{title}{f' ({fit})' if fit else ''} · eval {out['eval_id'][:8]}", s[key])
    if s.get("counted") is not None:
        print_counted(s["counted"], s["out_of_fold"].get("intervals") or {})
    if s.get("held_out_counted") is not None:
        print_held_out_counted(s["held_out_counted"])
    if s.get("explanations") is not None:
        figures = "  ".join(f"{k.replace('_', ' ')}: {v}" for k, v in s["explanations"].items())
        console.print(f"explanations: {figures}", highlight=False)
    if s.get("takes") is not None:
        console.print("takes: " + "  ".join(f"{k.replace('_', ' ')}: {v}" for k, v in s["takes"].items()))


def print_held_out_counted(c: dict) -> None:
    """The held-out panel counting only the personas the calibration's own fit counts."""
    ci = c.get("intervals") or {}

    def shown(key: str) -> str:
        lo_hi = ci.get(f"counted_{key}")
        return f"{c[key]}" + (f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else "")

    console.print(
        f"counted personas (kappa recorded by the calibration's fit ≥ {c['kappa_min']}): "
        f"{', '.join(c['counted']) or 'none'}; not counted: {', '.join(c['not_counted']) or 'none'}",
        highlight=False,
    )
    console.print(
        f"held out, counted personas only: panel ship pct spearman {shown('panel_ship_pct_spearman')}  "
        f"ship balanced accuracy {shown('ship_balanced_accuracy')}  panels ship {c['panels_ship']} "
        f"(ref {c['reference_panels_ship']})",
        highlight=False,
    )


def print_figures(title: str, figures: Any) -> None:
    """Per-persona agreement and the panel-level figures, as `shipskip eval` reports them; with
    bootstrap intervals where the figures carry them (out-of-fold)."""
    fig = as_fields(figures)
    ci = fig.get("intervals") or {}

    def span(key: str) -> str:
        lo_hi = ci.get(key)
        return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}" if lo_hi else "-"

    def with_span(value: object, key: str) -> str:
        return f"{value} ({span(key)})" if ci else str(value)

    console.print(f"[bold]{for_terminal(title)}[/]", highlight=False)
    table = Table(title_justify="left", caption="(95% bootstrap interval)" if ci else None)
    for c in ("persona", "n", "agreement", "kappa", "mae", "abstained"):
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


def print_counted(counted: Any, ci: dict) -> None:
    """The panel with every persona and with the personas that count (out-of-fold kappa at least
    COUNT_KAPPA_MIN), the flip chance's calibration, and accuracy against coverage."""
    c = as_fields(counted)

    def span(key: str) -> str:
        lo_hi = ci.get(key)
        return f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else ""

    console.print(
        f"[bold]counted personas (out-of-fold kappa ≥ {c['kappa_min']}): {', '.join(c['counted']) or 'none'}"
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


def print_holistic(result: Any) -> None:
    """A holistic evaluation: each persona's quality figures, then the checklist's own figures."""
    out = as_fields(result)
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
