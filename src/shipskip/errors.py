"""Every error shipskip raises, under ShipskipError, each with typed fields: code branches on
the type and the fields, never on the message, which is for people (one line, naming the file
and the field where there is one)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from .models import Usage


class ShipskipError(Exception):
    """An error whose message is fit to show a user as it is."""

    # Set once a flow run has said it in one line (`orchestration.failed`), so Prefect's own
    # logging of the same exception is left out.
    said: bool = False
    # The constructor's arguments, by attribute: Prefect pickles a failed run's exception, and
    # it is rebuilt from these fields, not from its message. Empty: the message alone.
    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> str | tuple[Any, ...]:
        if not self._fields:
            return super().__reduce__()
        return (type(self), tuple(getattr(self, f) for f in self._fields))


class InputError(ShipskipError):
    _fields = ("path", "field", "message")

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


class UnknownTool(ShipskipError):
    """A slug that names no reviewed tool."""

    _fields = ("slug",)

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"no reviewed tool with slug '{slug}'")


class UnknownPersona(ShipskipError):
    """A persona that is not on the panel (no prompts/personas/NAME.yaml)."""

    _fields = ("persona", "known")

    def __init__(self, persona: str, known: tuple[str, ...]) -> None:
        self.persona, self.known = persona, tuple(known)
        super().__init__(f"unknown persona '{persona}' (one of {', '.join(self.known)})")


class BadParameter(ShipskipError):
    """A command's or flow's parameter that is not valid, named with what it must be."""

    _fields = ("name", "message")

    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message
        super().__init__(f"{name}: {message}")


class Stopped(ShipskipError):
    """The process is shutting down (SIGTERM): a persona stops before its next call to the
    provider. Takes finished before it are checkpointed; the next run resumes from them."""

    _fields = ("slug", "persona")

    def __init__(self, slug: str = "", persona: str = "") -> None:
        self.slug, self.persona = slug, persona
        where = f" ({slug} · {persona})" if slug or persona else ""
        super().__init__(f"stopped before the review finished{where}; finished takes are kept")


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


class UncalibratedModel(ShipskipError):
    """SHIPSKIP_REQUIRE_CALIBRATION is set and a persona's model has no fitted calibration for its
    persona's prompt version: refused before any review."""

    def __init__(self, model: str, persona: str, prompt_version: str) -> None:
        self.model, self.persona, self.prompt_version = model, persona, prompt_version
        super().__init__(
            f"no fitted calibration for model {model} ({persona}, prompt version {prompt_version}); "
            "run `shipskip calibrate`, or unset SHIPSKIP_REQUIRE_CALIBRATION to score it uncalibrated"
        )


# The provider and the model


class InvalidOutput(ShipskipError):
    """The provider answered, but not with a reply that validates."""

    def __init__(self, message: str, content: str) -> None:
        super().__init__(message)
        self.content = content


class RejectedText(InvalidOutput):
    """A well-formed reply whose text our own checks refuse (a take that echoes the prompt or
    argues against its verdict): the model's limit, not the provider's fault."""


class LLMFailure(ShipskipError):
    """Every attempt failed; carries what was spent so the caller can still record it.
    `rejected`: why our checks refused the last attempt's text, when that is how it ended."""

    def __init__(self, message: str, attempts: int, usage: Usage, rejected: str | None = None) -> None:
        super().__init__(message)
        self.attempts, self.usage, self.rejected = attempts, usage, rejected


class ProviderRejected(ShipskipError):
    """The provider refused us, not this request: a bad key, no access, or no such model or
    endpoint. Asking again, or asking about another tool, cannot help, so the run stops."""


class ProviderDown(ProviderRejected):
    """A provider that failed `failures` calls in a row, which spent `elapsed_s` waiting on it
    without one answer: its circuit breaker is open. Asking about another tool cannot help either, so the
    run stops as for a refused key, and nothing it spoiled is kept.

    Built from the message alone as well (the fields then empty): Prefect rebuilds an exception
    from its type and message when it reads a failed task's result back."""

    def __init__(
        self, message: str, *, base_url: str = "", model: str = "", failures: int = 0,
        elapsed_s: float = 0.0, last_error: str = "",
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.base_url, self.model, self.failures = base_url, model, failures
        self.elapsed_s, self.last_error = elapsed_s, last_error

    @classmethod
    def of(cls, base_url: str, model: str, failures: int, elapsed_s: float, last_error: str) -> ProviderDown:
        return cls(
            f"the provider at {base_url} (model {model}) is not answering: {failures} calls in a row "
            f"failed after {elapsed_s:.0f} s of waiting (last: {last_error}); stopped asking it "
            "(SHIPSKIP_BREAKER_FAILURES, SHIPSKIP_BREAKER_DEADLINE_S)",
            base_url=base_url, model=model, failures=failures, elapsed_s=elapsed_s, last_error=last_error,
        )  # fmt: skip


# The store


class ToolBusy(ShipskipError):
    """Another live process (`owner`, host:pid) is reviewing this tool right now."""

    _fields = ("slug", "owner", "last_seen")

    def __init__(self, slug: str, owner: str, last_seen: datetime | None) -> None:
        self.slug, self.owner, self.last_seen = slug, owner, last_seen
        seen = f" (last seen {last_seen:%H:%M:%S})" if last_seen is not None else ""
        super().__init__(f"'{slug}' is being reviewed by process {owner}{seen}")


class BudgetReached(ShipskipError):
    """The run's spending cap (SHIPSKIP_MAX_COST_PER_RUN / SHIPSKIP_MAX_TOKENS_PER_RUN) is
    reached: no persona starts after it. Takes finished before it are checkpointed, and the tool is
    left for the next run, not marked reviewed."""

    _fields = ("spent",)

    def __init__(self, spent: str) -> None:
        self.spent = spent
        super().__init__(f"the run's budget is reached ({spent}); left for the next run")


class NotHeldOut(ShipskipError):
    """`eval --held-out` on a labelled file that shares tools with the file the model's
    calibration was fitted on: its figures would be in-sample, so it is refused before any
    question is asked."""

    _fields = ("reference", "fitted_on", "shared")

    def __init__(self, reference: str, fitted_on: str, shared: list[str]) -> None:
        self.reference, self.fitted_on, self.shared = reference, fitted_on, list(shared)
        more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
        super().__init__(
            f"{reference}: not held out: {len(shared)} of its tools were in the calibration's fit "
            f"on {fitted_on} ({', '.join(shared[:5])}{more})"
        )
