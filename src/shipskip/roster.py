"""The panel's personas, discovered from the persona files: who sits, in what order, in what colour.

`prompts/personas/NAME.yaml` is the one source for the persona list. Adding a file adds a persona
everywhere (CLI choices, flow parameters, pages, evaluation); `order:` places it and
`colour:` draws it in charts. Archived versions (`NAME@V.yaml`) are not personas.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .models import load_yaml
from .settings import get_settings

_NAME = re.compile(r"^[a-z]+$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
FALLBACK_COLOUR = "#555555"


@dataclass(frozen=True)
class Persona:
    name: str
    title: str
    order: int
    colour: str


def persona_files(prompts_dir: Path) -> list[Path]:
    """The current persona files (not archived versions), by file name."""
    folder = prompts_dir / "personas"
    return sorted(p for p in folder.glob("*.yaml") if "@" not in p.stem and _NAME.match(p.stem))


def discover(prompts_dir: Path) -> tuple[Persona, ...]:
    """Personas in their stated order (ties by name). A file too broken to read still gives a persona
    under its file name, so the full check (`personas.load_prompts`) can name its fault."""
    found = []
    for path in persona_files(prompts_dir):
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            data = None
        data = data if isinstance(data, dict) else {}
        order = data.get("order")
        colour = data.get("colour")
        title = data.get("title")
        found.append(
            Persona(
                name=path.stem,
                title=title if isinstance(title, str) else path.stem.title(),
                order=order if isinstance(order, int) and not isinstance(order, bool) else 1000,
                colour=colour if isinstance(colour, str) and _COLOUR.match(colour) else FALLBACK_COLOUR,
            )
        )
    return tuple(sorted(found, key=lambda s: (s.order, s.name)))


@functools.cache
def panel_personas() -> tuple[Persona, ...]:
    """The panel's personas, read from the settings' prompts folder (the environment or `.env`)
    when first asked for, never at import; then kept for the process, as every sort by persona
    order asks for them."""
    return discover(get_settings().prompts_dir)


def personas() -> tuple[str, ...]:
    """Persona names in persona order: the one list every command, page and flow uses."""
    return tuple(s.name for s in panel_personas())


def colours() -> dict[str, str]:
    return {s.name: s.colour for s in panel_personas()}


@functools.cache
def _places() -> dict[str, int]:
    return {n: i for i, n in enumerate(personas())}


def persona_key(name: str) -> tuple[int, str]:
    """Sort key for persona names: persona order, then any name that is not a persona, by name.
    Called for every take a page sorts, so the places are made once, as the personas are read."""
    place = _places()
    return (place.get(name, len(place)), name)
