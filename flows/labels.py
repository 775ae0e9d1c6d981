"""Flow: an editor's own call on one persona (`shipskip label`). The work is `shipskip.labels`."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.states import State
from pydantic import Field

from shipskip import labels
from shipskip.errors import ShipskipError
from shipskip.orchestration import failed, one_line_parameter_errors
from shipskip.settings import get_settings
from shipskip.store import Store

from .choices import PersonaName


@one_line_parameter_errors
@flow(name="label-seat")
def label_persona(
    tool: Annotated[str, Field(description="Slug of a reviewed tool.")],
    persona: Annotated[PersonaName, Field(description="The persona the call is on.")],
    verdict: Annotated[Literal["ship", "skip", "abstain"], Field(description="The editor's call.")],
    reason: Annotated[str, Field(min_length=3, description="Why; shown on pages beside the panel's take.")],
    score: Annotated[int | None, Field(ge=0, le=100, description="The editor's score out of 100.")] = None,
    editor: Annotated[
        str | None, Field(description="Who labels; the worker's OS user when left out.")
    ] = None,
) -> dict | State:
    """Store an editor's call on one persona; it supersedes that editor's earlier call there,
    which stays as history.

    Args:
        tool: Slug of a reviewed tool.
        persona: The persona the call is on.
        verdict: The editor's call: ship, skip or abstain.
        reason: Why; shown on pages beside the panel's take.
        score: The editor's score out of 100, on the verdict's side of 60.
        editor: Who labels; the worker's OS user when left out.
    """
    settings = get_settings()
    try:
        got = labels.record_label(
            tool,
            persona,
            verdict,
            reason,
            Store.from_settings(settings),
            settings,
            score=score,
            editor=editor,
        )
    except ShipskipError as exc:
        return failed(exc)
    get_run_logger().info("%s %s: %s: %s", tool, persona, got.editor, got.text)
    return got.model_dump(mode="json")
