"""The one Typer app every command registers on, and what the commands share: the argument
types made from the roster, the store, and where a typed output path may land. The commands
live in `cli` (reviews, the store's records), `cli_site` (pages) and `cli_eval` (evaluation
and labels); `cli` imports the other two, so `shipskip.cli.app` holds them all."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .cli_output import console
from .errors import ShipskipError, UnsafeWrite
from .roster import personas
from .settings import get_settings, quiet_prefect
from .store import Store


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


def open_store() -> Store:
    return Store.from_settings(get_settings())


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


def check_out(path: Path) -> Path:
    """Files a command writes where asked land only under the working directory or the output
    folder, so a typed path cannot overwrite anything elsewhere: the one of the two it is
    written under (`writes` then keeps it there, links and all)."""
    from .writes import locate

    roots = [get_settings().out_dir, Path.cwd()]
    try:
        return locate(path, roots)[0]
    except UnsafeWrite:
        raise UnsafeWrite(f"--out {path}", f"write under the working directory or {roots[0]}") from None
