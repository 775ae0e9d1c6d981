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


class StoredRowError(ShipskipError):
    """A stored row that no longer passes validation when read back (written by hand, or by an
    older version): it fails the one page or command that needs it, never its neighbours."""

    def __init__(self, table: str, key: str, field: str, message: str) -> None:
        self.table, self.key, self.field, self.message = table, key, field, message
        super().__init__(f"stored {table} row '{key}': {field}: {message}")


class SettingsError(ShipskipError):
    """A setting that cannot be used, named by the environment variable that sets it."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable, self.message = variable, message
        super().__init__(f"{variable}: {message}")


class DiskFull(ShipskipError):
    """A write that found no space left (ENOSPC, or the quota, EDQUOT)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"no space left on the device: {what}")
