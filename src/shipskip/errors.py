"""Errors users see: one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class ShipskipError(Exception):
    """An error whose message is fit to show a user as it is."""


class InputError(ShipskipError):
    def __init__(self, path: Path | str, field: str, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        super().__init__(f"{self.path}: {field}: {message}")


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """The first problem in a pydantic error, as (dotted field, message)."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(root)"
    return field, err["msg"].removeprefix("Value error, ")


class UnsafeWrite(ShipskipError):
    """A file shipskip was asked to write would land outside the folder named for it (through a
    link or `..`), or where a file or folder stands in its way."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


class QueryTimeout(ShipskipError):
    """An analyst's query ran past its time limit and was stopped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"query: stopped after its time limit of {seconds:g} s (SHIPSKIP_QUERY_TIMEOUT_S); "
            "narrow it, or raise the limit"
        )
