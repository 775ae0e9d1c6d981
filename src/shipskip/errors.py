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


class UncalibratedModel(ShipskipError):
    """SHIPSKIP_REQUIRE_CALIBRATION is set and a seat's model has no fitted calibration for its
    persona's prompt version: refused before any review."""

    def __init__(self, model: str, persona: str, prompt_version: str) -> None:
        self.model, self.persona, self.prompt_version = model, persona, prompt_version
        super().__init__(
            f"no fitted calibration for model {model} ({persona}, prompt version {prompt_version}); "
            "run `shipskip calibrate`, or unset SHIPSKIP_REQUIRE_CALIBRATION to score it uncalibrated"
        )
