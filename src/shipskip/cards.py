"""Reading tool cards from files: YAML, JSON, or Markdown with front matter. Safe loading only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from pydantic import ValidationError

from .errors import InputError, describe_validation_error
from .models import ToolCard

MAX_CARD_BYTES = 256 * 1024
CARD_SUFFIXES = (".yaml", ".yml", ".json", ".md")


def parse_card(data: Any, where: str) -> ToolCard:
    if not isinstance(data, dict):
        raise InputError(where, "(root)", "a tool card must be a mapping of fields")
    try:
        return ToolCard.model_validate(data)
    except ValidationError as exc:
        field, msg = describe_validation_error(exc)
        raise InputError(where, field, msg) from None


def _decode(raw: bytes, path: Path) -> str:
    if b"\x00" in raw:
        raise InputError(path, "file", "is binary, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, "file", f"is not UTF-8 (byte {exc.start})") from None


def _safe_yaml(text: str, path: Path) -> Any:
    # SafeLoader builds no Python objects from tags; aliases are refused outright because a
    # few of them nested expand into a "billion laughs" document.
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise InputError(path, "file", "YAML aliases (*ref) are not allowed in cards")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(path, "file", f"invalid YAML: {str(exc).splitlines()[0]}") from None


def load_card(path: Path) -> ToolCard:
    """Read one card; any problem is an InputError naming the file and the field."""
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError(path, "file", "not found") from None
    if size > MAX_CARD_BYTES:
        raise InputError(path, "file", f"is {size} bytes; cards are limited to {MAX_CARD_BYTES}")
    text = _decode(path.read_bytes(), path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(path, "file", f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    elif suffix in (".yaml", ".yml"):
        data = _safe_yaml(text, path)
    elif suffix == ".md":
        head, body = _split_front_matter(text, path)
        data = _safe_yaml(head, path)
        if isinstance(data, dict) and "description" not in data:
            data["description"] = body
    else:
        raise InputError(path, "file", f"unknown card type '{suffix}' (use {', '.join(CARD_SUFFIXES)})")
    return parse_card(data, str(path))


def _split_front_matter(text: str, path: Path) -> tuple[str, str]:
    handler = frontmatter.YAMLHandler()
    if not handler.detect(text):
        raise InputError(path, "front matter", "a Markdown card starts with a '---' block")
    head, body = handler.split(text)
    return head, body.strip()
