"""Calibrating a model: ask it every checklist question on the labelled reference, storing each
answer as it arrives, then fit each persona, judge the fit out-of-fold and write the model's
calibration file."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from . import calibrations
from .calibrate import fit, ship_curve
from .calibrations import Entry, ModelKey, Scoring
from .eval_figures import (
    EvalRun,
    checklist_predictions,
    extreme_share,
    intervals,
    observations,
    panel_figures,
    persona_figures,
    with_predictions,
)
from .personas import PromptSet, load_prompts
from .questions import Spend
from .reference import ItemResult, OnPersona, RefItem, load_reference, quiet
from .review import model_keys, open_panel
from .settings import Settings
from .store import Store


class CalibrationRun(EvalRun):
    """A calibration: its out-of-fold evaluation, and what it wrote."""

    written: list[str]  # the calibration files, one per model
    model: str
    calibrations: dict[str, str]  # per persona, which calibration now scores it
    editor_labels: int  # editors' labels fitted beside the reference


def persona_entry_figures(oof: list[ItemResult], oof_intervals: dict, persona: str) -> dict:
    """What a calibration records of its persona's out-of-fold fit: agreement and kappa with
    their intervals, on how many tools."""
    f = persona_figures(oof).get(persona)
    if f is None:
        return {}
    rows = [
        r for r in oof if r.persona == persona and r.score is not None and r.ref_verdict in ("ship", "skip")
    ]
    return {
        "tools": f["n"], "verdict_agreement": f["verdict_agreement"], "kappa": f["kappa"],
        "agreement_interval": oof_intervals.get(f"{persona}_agreement"),
        "kappa_interval": oof_intervals.get(f"{persona}_kappa"),
        "interval": f"95% bootstrap, {oof_intervals.get('draws')} draws of whole tools",
        # P(ship) at a score: what each take's p_ship and so the panel's flip chance come from.
        "ship_curve": ship_curve([r.score for r in rows], [r.ref_verdict == "ship" for r in rows]),  # type: ignore[misc]
    }  # fmt: skip


def with_figures(
    data: calibrations.CalibrationFile, prompts: PromptSet, oof: list[ItemResult], oof_intervals: dict
) -> calibrations.CalibrationFile:
    """The calibration file with each entry's out-of-fold figures recomputed from these
    results (for the entry's persona, where its prompt version is the one evaluated), its
    weights untouched: how the shipped file gets its figures from the committed answers."""
    entries = [
        e.model_copy(update={"figures": persona_entry_figures(oof, oof_intervals, e.persona)})
        if e.persona in prompts.personas and prompts.personas[e.persona].version == e.prompt_version
        else e
        for e in data.entries
    ]
    return data.model_copy(update={"entries": entries})


def write_fitted(
    settings: Settings,
    prompts: PromptSet,
    keys: dict[str, ModelKey],
    results: list[ItemResult],
    oof: list[ItemResult],
    oof_intervals: dict,
    command: str,
) -> list[Path]:
    """Fit each persona on all the answers and write the calibrations, one file per model,
    under SHIPSKIP_CALIBRATIONS_DIR (each replacing any for the same persona and prompt version)."""
    today = datetime.now(UTC).date().isoformat()
    by_key: dict[ModelKey, list[Entry]] = {}
    for persona, p in prompts.personas.items():
        cal = fit(p.checklist, observations(results, persona), command=command, fitted_on=today)
        by_key.setdefault(keys[persona], []).append(
            Entry(persona=persona, prompt_version=p.version, calibration=cal,
                  figures=persona_entry_figures(oof, oof_intervals, persona))
        )  # fmt: skip
    folder = settings.calibrations_dir
    return [
        calibrations.write(folder, calibrations.with_entries(calibrations.read(folder, key), key, entries))
        for key, entries in by_key.items()
    ]


class Plan(BaseModel):
    """What a calibration will still ask, shown before it asks anything."""

    model: str
    tools: int
    requests: int
    prompt_tokens: int
    answer_tokens: int
    answered: int  # answers already stored from an earlier, interrupted run
    resuming: bool


def answers_path(settings: Settings, key: ModelKey) -> Path:
    return settings.calibrations_dir / "answers" / key.file_name.replace(".json", ".jsonl")


def _read_answers(path: Path) -> dict[tuple[str, str, str, str], dict]:
    """Stored answers by (tool, persona, prompt hash, item). A line cut short by a kill is
    skipped: that answer is asked again."""
    out: dict[tuple[str, str, str, str], dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            a = json.loads(line)
            out[(a["slug"], a["persona"], a["prompt_hash"], a["item"])] = a
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return out


def _questions(prompts: PromptSet, persona: str) -> dict[str, str]:
    p = prompts.personas[persona].checklist
    asked = {"relevance": p.relevance.question} if p.relevance else {}
    return {**asked, **{i.id: i.question for i in p.items if i.question}}


def plan_calibration(settings: Settings, reference: Path, limit: int | None = None) -> Plan:
    """The requests and tokens a calibration of the configured model will still spend: every
    question of every persona on the first `limit` reference tools, less the answers stored.
    Prompt tokens are estimated at four characters a token."""
    from .personas import question_messages

    items = load_reference(reference)[:limit]
    prompts = load_prompts(settings.prompts_dir)
    keys = model_keys(settings, prompts, list(prompts.personas), require=False)
    stored = {k: _read_answers(answers_path(settings, k)) for k in set(keys.values())}
    requests = chars = answered = 0
    for item in items:
        for persona in prompts.personas:
            h = prompts.prompt_hash(persona)
            have = stored[keys[persona]]
            for item_id, question in _questions(prompts, persona).items():
                if (item.card.slug, persona, h, item_id) in have:
                    answered += 1
                    continue
                requests += 1
                chars += sum(
                    len(m["content"]) for m in question_messages(prompts, persona, item.card, question)
                )
    return Plan(
        model=", ".join(sorted({str(k) for k in keys.values()})), tools=len(items), requests=requests,
        prompt_tokens=chars // 4, answer_tokens=requests * settings.checklist_max_tokens,
        answered=answered, resuming=any(stored.values()),
    )  # fmt: skip


def run_calibration(
    settings: Settings,
    reference: Path,
    *,
    limit: int | None = None,
    command: str = "",
    on_persona: OnPersona = quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
    with_labels: bool = False,
) -> CalibrationRun:
    """Ask the configured model every checklist question on the labelled reference (the first
    `limit` tools), storing each answer as it arrives so a run that is killed goes on where it
    stopped; then fit each persona, judge the fit out-of-fold and write the model's calibration.
    `with_labels` adds the store's editors' labels on this model's takes to what is fitted."""
    items = load_reference(reference)[:limit]
    prompts = load_prompts(settings.prompts_dir)
    names = list(prompts.personas)
    keys = model_keys(settings, prompts, names, require=False)
    stored = {k: _read_answers(answers_path(settings, k)) for k in set(keys.values())}
    reported: dict[str, set[str]] = {n: set() for n in names}
    on_phase("Asking the checklist", len(items) * len(names))
    files = {k: answers_path(settings, k) for k in keys.values()}
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with ExitStack() as stack:
        panel = None
        out = {k: stack.enter_context(f.open("a", encoding="utf-8")) for k, f in files.items()}
        for k, f in files.items():
            if f.stat().st_size and not f.read_bytes().endswith(b"\n"):
                out[k].write("\n")  # a line a kill cut short stays on its own, unread
        for item in items:
            for persona in names:
                h, have = prompts.prompt_hash(persona), stored[keys[persona]]
                got: dict[str, tuple[float | None, str]] = {}
                for item_id, question in _questions(prompts, persona).items():
                    a = have.get((item.card.slug, persona, h, item_id))
                    if a is None:
                        if panel is None:  # nothing is started when every answer is stored
                            panel = stack.enter_context(open_panel(settings, prompts, require=False))
                        spend = Spend()
                        p, source = panel.answer(persona, item.card, question, spend)
                        if p is None:
                            got[item_id] = (None, "failed")  # asked again on the next run
                            continue
                        a = {
                            "slug": item.card.slug, "persona": persona, "prompt_hash": h, "item": item_id,
                            "p_yes": p, "source": source, "model": ", ".join(sorted(spend.models)),
                        }  # fmt: skip
                        # One line per answer, flushed: a kill loses at most the answer in flight.
                        out[keys[persona]].write(json.dumps(a) + "\n")
                        out[keys[persona]].flush()
                        have[(item.card.slug, persona, h, item_id)] = a
                    got[item_id] = (a["p_yes"], a["source"])
                    if a.get("model"):
                        reported[persona].update(a["model"].split(", "))
                results.append(_stored_persona(prompts, item, persona, got))
                on_persona("asked", item.card.slug, persona)
    # The calibration is filed under the model the provider said answered, where it said one.
    keys = {
        n: ModelKey(sorted(reported[n])[0], keys[n].digest) if len(reported[n]) == 1 else keys[n]
        for n in names
    }
    labelled = 0
    if with_labels:
        results, labelled = with_editor_labels(
            Store.from_settings(settings), prompts, keys, results, settings.calibrations_dir
        )
    oof = with_predictions(results, checklist_predictions(prompts, results, oof=True))
    oof_intervals = intervals(oof)
    written = write_fitted(settings, prompts, keys, results, oof, oof_intervals, command)
    fitted, notes = calibrations.calibrated_prompts(
        prompts, settings.calibrations_dir, keys, settings.uncalibrated_points
    )
    in_sample = with_predictions(results, checklist_predictions(fitted, results, oof=False))
    summary = {
        "out_of_fold": {**panel_figures(oof), "seats": persona_figures(oof), "intervals": oof_intervals,
                        "extreme_share": extreme_share(oof)},
        "persona_files": {**panel_figures(in_sample), "seats": persona_figures(in_sample),
                          "extreme_share": extreme_share(in_sample), "fit": "in-sample"},
    }  # fmt: skip
    model = ", ".join(sorted({str(k) for k in keys.values()}))
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    store = Store.from_settings(settings)
    eval_id = store.save_eval(str(reference), model, prompt_hash, 1, summary, oof)
    return CalibrationRun(eval_id=eval_id, summary=summary, written=[str(p) for p in written], model=model,
                          calibrations=notes, editor_labels=labelled)  # fmt: skip


def with_editor_labels(
    store: Store,
    prompts: PromptSet,
    keys: dict[str, ModelKey],
    results: list[ItemResult],
    calibrations_dir: Path,
) -> tuple[list[ItemResult], int]:
    """The results plus one per editor's label on a persona scored by that persona's model (its
    latest label there, on the answers of the take it judged). A labelled persona that is also a
    reference card's takes the editor's call in place of the reference's, so no tool counts
    twice in the out-of-fold figures. Also how many labels were added."""
    from .labels import labelled_observations

    versions = {n: p.version for n, p in prompts.personas.items()}
    added: dict[tuple[str, str], ItemResult] = {}
    for key in sorted(set(keys.values()), key=str):
        model = key.model
        # The content-free biases an uncalibrated take of this model was corrected by.
        data = calibrations.read(calibrations_dir, key)
        biases = {(b.persona, b.prompt_hash): b.p_yes for b in (data.contextual if data else [])}
        for row in labelled_observations(store, model, versions, biases):
            if keys.get(row["persona"], ModelKey("")).model != model:
                continue
            added[(row["slug"], row["persona"])] = ItemResult(
                **row, verdict=None, score=None, first_attempt_valid=True, grounded=None,
                verdict_flips=0.0, score_spread=None, take=None,
            )  # fmt: skip
    kept = [r for r in results if (r.slug, r.persona) not in added]
    return kept + list(added.values()), len(added)


def calibration_results(settings: Settings, reference: Path, key: ModelKey) -> list[ItemResult]:
    """The answers `shipskip calibrate` stored for one model, as evaluation results per
    reference card and persona (for the current prompts; a question not answered reads as failed)."""
    prompts = load_prompts(settings.prompts_dir)
    stored = _read_answers(answers_path(settings, key))
    out = []
    for item in load_reference(reference):
        for persona in prompts.personas:
            h = prompts.prompt_hash(persona)
            got = {
                k[3]: (a["p_yes"], a["source"])
                for k, a in stored.items()
                if k[:3] == (item.card.slug, persona, h)
            }
            out.append(_stored_persona(prompts, item, persona, got))
    return out


def _stored_persona(
    prompts: PromptSet, item: RefItem, persona: str, got: dict[str, tuple[float | None, str]]
) -> ItemResult:
    """One persona's stored answers on one reference card, as an evaluation reads them."""
    checklist = prompts.personas[persona].checklist
    answers = [(i, *got.get(i.id, (None, "card"))) for i in checklist.items]
    criteria = Scoring(checklist=checklist, model="", label="").criteria(item.card, answers)  # type: ignore[arg-type]
    ref = item.reference.get(persona)  # type: ignore[call-overload]
    return ItemResult(
        slug=item.card.slug, persona=persona,
        ref_verdict=ref.verdict if ref else None, ref_score=ref.score if ref else None,
        verdict=None, score=None, first_attempt_valid=True, grounded=None, verdict_flips=0.0,
        score_spread=None, take=None, relevance=got.get("relevance", (None, ""))[0], criteria=criteria,
    )  # fmt: skip
