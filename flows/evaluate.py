"""Flow: run the panel on a labelled reference set and store the figures."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.states import State

from shipskip.errors import ShipskipError
from shipskip.evaluate import run_holistic_eval
from shipskip.orchestration import failed, one_line_parameter_errors
from shipskip.settings import get_settings


@one_line_parameter_errors
@flow(name="evaluate-panel")
def evaluate_panel(reference: str, samples: int = 3) -> dict | State:
    """The holistic prompt against a labelled set; the checklist's own evaluation is `shipskip eval`."""
    try:
        return run_holistic_eval(get_settings(), Path(reference), samples).model_dump()
    except ShipskipError as exc:
        return failed(exc)
