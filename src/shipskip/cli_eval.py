"""The commands that judge the panel against labels (eval, calibrate) and take editors' own
calls (label, queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_app import app, open_store
from .cli_output import (
    EvalProgress,
    as_fields,
    console,
    err,
    fail,
    print_eval,
    print_holistic,
    queue_table,
    user_errors,
)
from .errors import ShipskipError
from .settings import get_settings
from .terminal import for_terminal


@app.command(name="eval")
def eval_(
    reference: Annotated[Path, typer.Argument(help="Labelled JSON Lines: {card, reference}.")],
    scoring: Annotated[
        str | None, typer.Option(help="checklist or holistic; default SHIPSKIP_SCORING (checklist).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Holistic only: takes drawn per persona, for stability.")] = 3,
    answers: Annotated[
        str | None, typer.Option(help="Checklist: reuse stored answers (eval id or prefix, or .jsonl file).")
    ] = None,
    takes: Annotated[
        int, typer.Option(help="Checklist: write takes for the first N tools and check them.")
    ] = 0,
    write_weights: Annotated[
        bool,
        typer.Option(help="Checklist: fit on the whole set and write the model's calibration file."),
    ] = False,
    held_out: Annotated[
        bool,
        typer.Option(
            "--held-out",
            help="Checklist: judge only the model's calibration as it stands, fitted on other tools "
            "(refused if the file shares a tool with its fit); nothing is fitted on these labels.",
        ),
    ] = False,
    save_answers: Annotated[
        Path | None,
        typer.Option(help="Checklist: also write the answers to this .jsonl file, as --answers reads them."),
    ] = None,
) -> None:
    """Score the panel against a labelled set; figures go to DuckDB (eval_runs, eval_items).

    Checklist figures are out-of-fold: each tool is judged by weights fitted without it.
    With --held-out, the model's own calibration is judged on tools its fit never saw.
    """
    from .reference import load_reference

    settings = get_settings()
    mode = scoring or settings.scoring
    if mode not in ("checklist", "holistic"):
        fail(ShipskipError(f"--scoring must be checklist or holistic, not '{mode}'"))
    with user_errors():
        load_reference(reference)
    if mode == "holistic":
        if held_out or save_answers:
            fail(ShipskipError("--held-out and --save-answers are for checklist scoring"))
        _eval_holistic(reference, samples)
        return
    from .evaluate import run_checklist_eval

    command = f"shipskip eval {reference}" + (f" --answers {answers}" if answers else "") + " --write-weights"
    with user_errors(), EvalProgress() as shown:
        out = run_checklist_eval(
            settings, reference, answers_from=answers, takes=takes, write_weights=write_weights,
            held_out=held_out, save_answers=save_answers, command=command, on_persona=shown.persona_step,
            on_phase=shown.phase,
        )  # fmt: skip
    print_eval(out)
    if write_weights:
        console.print(
            f"Wrote the fitted calibration under {for_terminal(settings.calibrations_dir)}", highlight=False
        )
    if save_answers:
        console.print(f"Wrote the answers to {for_terminal(save_answers)}", highlight=False)


@app.command()
def calibrate(
    reference: Annotated[Path, typer.Argument(help="Labelled JSON Lines: {card, reference}.")] = Path(
        "data/reference/panel.jsonl"
    ),
    yes: Annotated[bool, typer.Option("--yes", help="Spend the requests without asking first.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=2, help="Only the first N reference tools (answers are kept for a longer run)."),
    ] = None,
    with_labels: Annotated[
        bool, typer.Option("--with-labels", help="Also fit on the editors' labels stored for this model.")
    ] = False,
) -> None:
    """Fit the configured model's own calibration on the labelled reference.

    Asks every checklist question on every reference card (stored as they arrive, so a killed
    run resumes without asking them again), prints out-of-fold figures with 95% intervals and
    writes the calibration under SHIPSKIP_CALIBRATIONS_DIR."""
    from .calibration_run import plan_calibration, run_calibration
    from .reference import load_reference

    settings = get_settings()
    with user_errors():
        load_reference(reference)
        plan = plan_calibration(settings, reference, limit)
    console.print(
        f"Calibrating {for_terminal(plan.model)} on {plan.tools} tools: {plan.requests} requests, "
        f"about {plan.prompt_tokens:,} prompt tokens and {plan.answer_tokens:,} answer tokens"
        + (f" ({plan.answered} answers already stored)" if plan.answered else ""),
        highlight=False,
    )
    # A run that was started, and so agreed to, is resumed without asking again.
    if plan.requests and not (yes or plan.resuming) and not typer.confirm("Go on?", err=True):
        err.print("Nothing asked.")
        raise typer.Exit(1)
    command = f"shipskip calibrate {reference}" + (f" --limit {limit}" if limit else "")
    command += " --with-labels" if with_labels else ""
    with user_errors(), EvalProgress() as shown:
        out = run_calibration(
            settings, reference, limit=limit, command=command, on_persona=shown.persona_step,
            on_phase=shown.phase, with_labels=with_labels,
        )  # fmt: skip
    fields = as_fields(out)
    if with_labels:
        console.print(
            f"editors' labels fitted with the reference: {fields['editor_labels']}", highlight=False
        )
    print_eval(fields)
    for name in ("out_of_fold", "persona_files"):
        console.print(
            f"{name.replace('_', ' ')}: scores at 0 or 100: {fields['summary'][name]['extreme_share']}"
        )
    for path in fields["written"]:
        console.print(f"Wrote {for_terminal(path)}", highlight=False)


def _eval_holistic(reference: Path, samples: int) -> None:
    from .evaluate import run_holistic_eval

    with user_errors(), EvalProgress() as shown:
        out = run_holistic_eval(
            get_settings(), reference, samples, on_persona=shown.persona_step, on_phase=shown.phase
        )
    print_holistic(out)


@app.command()
def label(
    tool: Annotated[str, typer.Argument(help="Tool slug.")],
    persona: Annotated[str, typer.Argument(help="The persona the call is on.")],
    verdict: Annotated[str, typer.Argument(help="Your call: ship, skip or abstain.")],
    reason: Annotated[str, typer.Option(help="Why (shown on pages beside the panel's take).")],
    score: Annotated[
        int | None, typer.Option(help="Your score out of 100, on the verdict's side of 60.")
    ] = None,
    editor: Annotated[str | None, typer.Option(help="Who labels. Default: your OS user name.")] = None,
) -> None:
    """Record an editor's own call on one persona; it supersedes that editor's earlier call there,
    which stays as history, and `calibrate --with-labels` learns from it."""
    from .labels import record_label

    with user_errors():
        got = record_label(
            tool, persona, verdict, reason, open_store(), get_settings(), score=score, editor=editor
        )
    console.print(for_terminal(f"{tool} {persona}: {got.editor}: {got.text}"), highlight=False)


@app.command()
def queue(limit: Annotated[int, typer.Option(min=1, help="Tools listed.")] = 20) -> None:
    """The tools whose verdict is least certain (personas most evenly split, then scores nearest
    the ship line), for editors to label first; tools whose every persona is labelled are left out."""
    from .labels import queue as label_queue

    with user_errors():
        rows = label_queue(open_store(), limit)
    console.print(queue_table(rows))
