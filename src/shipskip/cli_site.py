"""The commands that write pages (compare, page, reviewer, digest, trends, site) or serve them
(web). None needs orchestration, so none starts a Prefect server."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from .cli_app import PersonaChoice, app, check_out, open_store
from .cli_output import console, err, fail, print_trends, said_left_out, user_errors
from .errors import ShipskipError
from .settings import get_settings
from .terminal import for_terminal


@app.command()
def compare(
    tool_a: Annotated[str, typer.Argument(help="First tool slug.")],
    tool_b: Annotated[str, typer.Argument(help="Second tool slug.")],
) -> None:
    """Write out/compare/A-vs-B.html and .md from the stored panels (named in slug order, as
    the site names the pair, whichever order the tools are given in)."""
    from .usecases import compare as write_comparison

    # Rendering needs no orchestration: no Prefect server is started for it.
    with user_errors():
        done = write_comparison(open_store(), get_settings(), tool_a, tool_b)
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
        path, _ = write_tool(open_store(), get_settings().out_dir, tool, left_out)
    console.print(f"Wrote {for_terminal(path)} (and .md)", highlight=False)
    said_left_out(left_out)


@app.command()
def reviewer(
    persona: Annotated[PersonaChoice, typer.Argument(help="The persona.", case_sensitive=False)],
) -> None:
    """Write a reviewer's page out/reviewers/PERSONA.html and .md: lens, record, ship rate by category."""
    from .publish import write_reviewer

    with user_errors():
        settings = get_settings()
        path = write_reviewer(open_store(), settings.out_dir, settings.prompts_dir, persona.value)
    console.print(f"Wrote {for_terminal(path)} (and .md)", highlight=False)


@app.command()
def digest(
    week: Annotated[str | None, typer.Option(help="ISO week such as 2026-W48; default this week.")] = None,
) -> None:
    """Write the weekly digest of the panel's verdicts."""
    from .publish import current_week, write_digest

    left_out: list[str] = []
    with user_errors():
        path, panels = write_digest(open_store(), get_settings().out_dir, week or current_week(), left_out)
    console.print(f"Wrote {for_terminal(path)} ({len(panels)} tools)", highlight=False)
    said_left_out(left_out)


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

    Counts each tool's current take per persona, in the week it was made; --all-versions counts
    every version instead (the history: a persona rerun three times counts four times)."""
    from .publish import write_trends

    try:
        start = date.fromisoformat(since) if since else None
    except ValueError:
        fail(ShipskipError(f"--since '{since}' must be a date such as 2026-01-31"))
    target = out or get_settings().out_dir / "trends.html"
    with user_errors():
        name = persona.value if persona else None
        if target.suffix != ".html":
            raise ShipskipError(f"--out {target}: the trends page is an .html file")
        root = check_out(target)
        summary = write_trends(open_store(), root, target, name, category, start, all_versions)
    err.print(f"Wrote {for_terminal(target)}", highlight=False)
    print_trends(summary, all_versions)


@app.command()
def site() -> None:
    """Build the whole static site under OUT_DIR (index.html to open); only pages whose inputs
    changed since the last build are written. No Prefect server is started."""
    from .site import build

    with user_errors():
        settings = get_settings()
        report = build(open_store(), settings)
    console.print(
        f"Site under {for_terminal(settings.out_dir)}: {len(report.written)} files written, "
        f"{len(report.removed)} removed, {report.unchanged} pages unchanged. "
        f"Open {for_terminal(settings.out_dir / 'index.html')}",
        highlight=False,
    )
    said_left_out(report.left_out)


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
        store = open_store()
    console.print(f"Serving {for_terminal(settings.out_dir)} on http://{host}:{port}/ (Ctrl-C stops)",
                  highlight=False)  # fmt: skip
    serve_web(store, settings, host, port)
