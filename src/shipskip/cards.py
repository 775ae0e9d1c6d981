"""Reading tool cards from files: YAML, JSON, or Markdown with front matter. Safe loading only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from pydantic import ValidationError

from .errors import InputError, describe_validation_error
from .models import ToolCard, load_yaml

MAX_CARD_BYTES = 256 * 1024
CARD_SUFFIXES = (".yaml", ".yml", ".json", ".md")
# A card is a flat mapping with a few short lists at most; anything deeper is hostile or
# broken, and Python's parsers would hit the recursion limit long before they refused it.
MAX_NESTING = 16


def _too_deep(text: str, limit: int = MAX_NESTING) -> bool:
    """True when brackets outside JSON strings nest deeper than the limit (a linear scan)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def load_json(text: str, where: str, field: str = "file") -> Any:
    """JSON text as data; too deep, too many digits or malformed is an InputError for `where`."""
    if _too_deep(text):
        raise InputError(where, "(root)", f"nested deeper than {MAX_NESTING} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(where, field, f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:
        # Python refuses integers over 4300 digits with a bare ValueError.
        raise InputError(where, field, f"unreadable JSON: {str(exc).split(';')[0]}") from None


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
        # utf-8-sig: editors on Windows save a byte-order mark that is not part of the text.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, "file", f"is not UTF-8 (byte {exc.start})") from None


def _safe_yaml(text: str, path: Path) -> Any:
    # SafeLoader builds no Python objects from tags; aliases are refused outright because a
    # few of them nested expand into a "billion laughs" document.
    try:
        depth = 0
        # The pure-Python parser streams events one at a time, so the depth limit below names
        # the fault; libyaml's scanner runs ahead and fails first with a vaguer message.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise InputError(path, "file", "YAML aliases (*ref) are not allowed in cards")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise InputError(path, "(root)", f"nested deeper than {MAX_NESTING} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise InputError(path, "file", f"invalid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, RecursionError) as exc:
        # Python refuses integers over 4300 digits with a bare ValueError.
        raise InputError(path, "file", f"unreadable YAML: {str(exc).split(';')[0]}") from None


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
        data = load_json(text, str(path))
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
