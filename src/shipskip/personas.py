"""Personas as data: load and validate prompt files, and render the messages for one take."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from jinja2 import DictLoader, Environment, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, describe_validation_error
from .models import PERSONAS, REPLY_ADAPTER, ToolCard

Line = Annotated[str, Field(min_length=3, max_length=300)]


class Example(BaseModel):
    """A worked take on an invented tool, to show a small model the voice and the format."""

    model_config = ConfigDict(extra="forbid")
    tool: Annotated[str, Field(min_length=10, max_length=600)]
    reply: dict

    def model_post_init(self, _: object) -> None:
        REPLY_ADAPTER.validate_python(self.reply)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z]+$")]
    title: Annotated[str, Field(min_length=3, max_length=40)]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z._-]{1,20}$")]
    role: Line
    asks: Annotated[list[Line], Field(min_length=2, max_length=8)]
    rewards: Annotated[list[Line], Field(min_length=1, max_length=8)]
    tired_of: Annotated[list[Line], Field(min_length=1, max_length=8)]
    abstain_when: Line | None = None
    examples: Annotated[list[Example], Field(min_length=1, max_length=4)]
    source_text: str = Field(default="", exclude=True, repr=False)


class PromptSet(BaseModel):
    """Everything a take's prompt is built from, with a hash that changes when any of it does."""

    personas: dict[str, Persona]
    templates: dict[str, str]

    def prompt_hash(self, persona: str) -> str:
        h = hashlib.sha256()
        for name in sorted(self.templates):
            h.update(name.encode() + b"\0" + self.templates[name].encode() + b"\0")
        h.update(self.personas[persona].source_text.encode())
        return h.hexdigest()[:16]


TEMPLATE_FILES = ("panel.system.j2", "review.user.j2")


def load_persona(path: Path) -> Persona:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(path, "file", f"unreadable: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise InputError(path, "file", "must be a YAML mapping")
    try:
        persona = Persona.model_validate(data)
    except ValidationError as exc:
        field, msg = describe_validation_error(exc)
        raise InputError(path, field, msg) from exc
    if persona.name != path.stem.split("@")[0]:
        raise InputError(path, "name", f"must match the file name '{path.stem}'")
    return persona.model_copy(update={"source_text": text})


def load_prompts(prompts_dir: Path, versions: dict[str, str | None] | None = None) -> PromptSet:
    """The current persona files, or for a persona in `versions`, its archived `name@V.yaml`."""
    personas = {}
    for name in PERSONAS:
        wanted = (versions or {}).get(name)
        persona = load_persona(prompts_dir / "personas" / f"{name}.yaml")
        if wanted and wanted != persona.version:
            path = prompts_dir / "personas" / f"{name}@{wanted}.yaml"
            if not re.fullmatch(r"[0-9A-Za-z._-]{1,20}", wanted) or not path.is_file():
                raise InputError(path, "version", f"no prompt version '{wanted}' for {name}")
            persona = load_persona(path)
            if persona.version != wanted:
                raise InputError(path, "version", f"says '{persona.version}', expected '{wanted}'")
        personas[name] = persona
    templates = {}
    for name in TEMPLATE_FILES:
        path = prompts_dir / name
        try:
            templates[name] = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(path, "file", "missing prompt template") from exc
    return PromptSet(personas=personas, templates=templates)


@cache
def _env(templates: tuple[tuple[str, str], ...]) -> Environment:
    env = Environment(
        loader=DictLoader(dict(templates)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fence"] = fence
    env.filters["tojson_compact"] = _tojson_compact
    return env


_DELIM_RE = re.compile(r"</?\s*(tool_card|tool|description|system|instructions?)\b[^>]*>", re.I)


def fence(text: str) -> str:
    """Untrusted text cannot close or open the delimiters that mark it as data."""
    return _DELIM_RE.sub(lambda m: m.group(0).replace("<", "(").replace(">", ")"), text)


def _tojson_compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def render_messages(prompts: PromptSet, persona: str, card: ToolCard) -> list[dict[str, str]]:
    """Shared part first (rules, then the delimited card) so providers can cache the prefix."""
    env = _env(tuple(sorted(prompts.templates.items())))
    p = prompts.personas[persona]
    system = env.get_template("panel.system.j2").render().strip()
    user = env.get_template("review.user.j2").render(card=card, persona=p).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def shared_prefix(prompts: PromptSet, card: ToolCard) -> str:
    """The part of the user message that is the same for all five personas."""
    texts = [render_messages(prompts, name, card)[1]["content"] for name in prompts.personas]
    prefix = texts[0]
    for t in texts[1:]:
        while not t.startswith(prefix):
            prefix = prefix[:-1]
    return prefix
