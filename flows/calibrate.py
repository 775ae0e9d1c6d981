"""Flow: fit the configured model's calibration on the labelled reference (`shipskip calibrate`)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from shipskip.calibration_run import plan_calibration, run_calibration
from shipskip.settings import get_settings


@flow(name="calibrate-model")
def calibrate_model(
    reference: str = "data/reference/panel.jsonl", limit: int | None = None, with_labels: bool = False
) -> dict:
    """Ask the configured model every checklist question on the first `limit` reference tools
    (all with none), fit and write its calibration. Starting the run is the go-ahead: the
    requests it will spend are logged first. A run that failed resumes from the stored answers.
    `with_labels` also fits the editors' labels stored for this model (`calibrate --with-labels`)."""
    settings = get_settings()
    plan = plan_calibration(settings, Path(reference), limit)
    get_run_logger().info(
        "Calibrating %s on %d tools: %d requests, about %d prompt tokens (%d answers already stored)",
        plan.model, plan.tools, plan.requests, plan.prompt_tokens, plan.answered,
    )  # fmt: skip
    command = f"shipskip calibrate {reference}" + (f" --limit {limit}" if limit else "")
    command += " --with-labels" if with_labels else ""
    out = run_calibration(settings, Path(reference), limit=limit, command=command, with_labels=with_labels)
    return out.model_dump(include={"eval_id", "model", "written", "calibrations", "editor_labels"}) | {
        "out_of_fold": {k: v for k, v in out.summary["out_of_fold"].items() if k != "intervals"}
    }
