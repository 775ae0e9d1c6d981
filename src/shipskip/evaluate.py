"""Running an evaluation: the panel on every labelled card (checklist answers judged
out-of-fold, or holistic draws), takes written and checked, figures stored with the answers.
The figures are `eval_figures`, the reference and answers `reference`, calibrating a model
`calibration_run`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from . import calibrations
from .calibration_run import write_fitted
from .calibrations import ModelKey, Scoring
from .errors import BadParameter, ShipskipError
from .eval_figures import (
    EvalRun,
    checklist_predictions,
    counted_figures,
    counted_personas,
    explanation_figures,
    intervals,
    panel_figures,
    persona_figures,
    summarise,
    with_predictions,
)
from .heldout import fit_note, held_out_note
from .models import Take
from .personas import Checklist, PromptSet, load_prompts
from .quality import consensus, is_grounded, panel_similarity
from .questions import Spend
from .reference import (
    ItemResult,
    OnPersona,
    RefItem,
    answered_personas,
    appending_answers,
    load_reference,
    quiet,
    stored_answers,
    write_answers,
)
from .review import Panel, model_keys, open_panel
from .settings import Settings
from .store import Store
from .take_checks import take_problem, unsupported


def judge_item(item: RefItem, persona: str, draws: list[Take]) -> tuple[ItemResult, Take]:
    take = consensus(draws) if len(draws) > 1 else draws[0]
    ref = item.reference.get(persona)  # type: ignore[call-overload]
    first = draws[0]
    return (
        ItemResult(
            slug=item.card.slug,
            persona=persona,
            ref_verdict=ref.verdict if ref else None,
            ref_score=ref.score if ref else None,
            verdict=take.verdict or "abstain",
            score=take.score,
            first_attempt_valid=first.attempts == 1 and not first.error,
            grounded=is_grounded(take.text, item.card) if take.text else None,
            verdict_flips=take.verdict_flips,
            score_spread=take.score_spread,
            take=take.text,
        ),  # fmt: skip
        take,
    )


def collect_answers(
    panel: Panel,
    items: list[RefItem],
    on_persona: OnPersona = quiet,
    checklists: dict[str, Checklist] | None = None,
    *,
    done: dict[tuple[str, str], ItemResult] | None = None,
    keep: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Every persona's relevance and checklist answers on every labelled card (no take yet), as
    the model gave them (never corrected), weighed by `checklists` (default: the prompts').
    Personas in `done` (by tool and persona) are not asked again; `keep` gets each persona as soon as
    it is answered, so a run that is killed loses at most the persona it was on."""
    results = []
    for item in items:
        for persona in panel.prompts.personas:
            if done and (item.card.slug, persona) in done:
                results.append(done[(item.card.slug, persona)])
                on_persona("kept", item.card.slug, persona)
                continue
            spend = Spend()
            rel = panel.prompts.personas[persona].checklist.relevance
            p_rel = panel.answer(persona, item.card, rel.question, spend)[0] if rel else None
            checklist = (checklists or {}).get(persona) or panel.prompts.personas[persona].checklist
            answers = panel.raw_answers(persona, item.card, spend)
            criteria = Scoring(checklist=checklist, model="", label="").criteria(item.card, answers)
            asked = sum(c.source != "card" for c in criteria)
            ref = item.reference.get(persona)  # type: ignore[call-overload]
            results.append(
                ItemResult(
                    slug=item.card.slug, persona=persona,
                    ref_verdict=ref.verdict if ref else None, ref_score=ref.score if ref else None,
                    verdict=None, score=None,
                    first_attempt_valid=spend.attempts == asked + bool(rel),
                    grounded=None, verdict_flips=0.0, score_spread=None, take=None,
                    relevance=p_rel, criteria=criteria,
                )
            )  # fmt: skip
            if keep:
                keep(results[-1])
            on_persona("asked", item.card.slug, persona)
    return results


def takes_to_check(items: list[RefItem], results: list[ItemResult], limit: int) -> int:
    """How many takes `check_takes` will ask for: personas with a verdict on the first `limit` tools."""
    first = {i.card.slug for i in items[:limit]}
    return sum(r.slug in first and r.verdict in ("ship", "skip") and r.score is not None for r in results)


def check_takes(
    panel: Panel, items: list[RefItem], results: list[ItemResult], limit: int, on_persona: OnPersona = quiet
) -> tuple[list[ItemResult], dict]:
    """Write takes for the first `limit` tools at their predicted verdicts; count what stood.

    Each published take (written, or composed from the checklist after every attempt was
    refused) is checked again here, independently of the retry loop that produced it: for
    its stance and echoes, and for a number, name, placeholder or claim its card lacks."""
    cards = {i.card.slug: i.card for i in items[:limit]}
    out, written, composed, failed, agree, invented = [], 0, 0, 0, 0, 0
    refused: Counter[str] = Counter()
    for r in results:
        if r.slug in cards and r.verdict in ("ship", "skip") and r.score is not None:
            spend = Spend()
            card = cards[r.slug]
            text, was_composed = panel.take_text(r.persona, card, r.verdict, r.score, r.criteria, spend)
            refused.update(spend.refusals)
            if text is None:
                failed += 1
            else:
                written += 1
                composed += was_composed
                p = panel.prompts.personas[r.persona]
                agree += take_problem(text, r.verdict, p, "") is None
                bad = unsupported(text, card, r.score, [c.label for c in r.criteria])
                invented += bad is not None and bad.kind != "ungrounded"
                r = r.model_copy(update={"take": text, "grounded": is_grounded(text, card)})
            on_persona("wrote a take", r.slug, r.persona)
        out.append(r)
    asked = written + failed
    return out, {
        "takes_asked": asked,
        "takes_written": written,
        "takes_failed_checks": failed,
        "takes_consistent": round(agree / written, 3) if written else None,
        "grounded_rate": round(sum(bool(r.grounded) for r in out if r.take) / written, 3)
        if written
        else None,
        # Published takes holding a number, name, placeholder or claim the card lacks.
        "takes_stating_what_the_card_lacks": invented,
        "composed_from_checklist": composed,
        "composed_rate": round(composed / written, 3) if written else None,
        # Attempts our checks refused on the way, by what they got wrong.
        "attempts_refused": ", ".join(f"{k} {n}" for k, n in sorted(refused.items())) or "none",
    }


def run_checklist_eval(
    settings: Settings,
    reference: Path,
    *,
    answers_from: str | None = None,
    takes: int = 0,
    write_weights: bool = False,
    held_out: bool = False,
    save_answers: Path | None = None,
    command: str = "",
    on_persona: OnPersona = quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
) -> EvalRun:
    """Ask the checklist on every labelled card (or reuse a stored evaluation's answers), then
    judge the weights out-of-fold; with `write_weights`, fit on everything and write them.
    With SHIPSKIP_CATALOGUE_FACTS the out-of-fold fit also reads each card's catalogue facts
    (from the cards above it in the reference); reviews do not, so no weights are written then.
    With `held_out`, judge only the model's calibration as it stands, fitted on other tools:
    nothing is fitted on this file's labels. `save_answers` writes the answers to that file."""
    if settings.catalogue_facts and (write_weights or takes):
        raise BadParameter(
            "SHIPSKIP_CATALOGUE_FACTS",
            "the catalogue facts are measured only: leave out --write-weights and --takes",
        )
    if held_out and write_weights:
        raise ShipskipError(
            "--held-out judges the calibration as it stands, so it cannot also --write-weights"
        )
    items = load_reference(reference)
    raw = load_prompts(settings.prompts_dir)
    keys = model_keys(settings, raw, list(raw.personas), require=False)
    prompts, _ = calibrations.calibrated_prompts(
        raw, settings.calibrations_dir, keys, settings.uncalibrated_points
    )
    # Checked before a question is asked, so a file that is not held out costs nothing.
    slugs = [i.card.slug for i in items]
    fit = held_out_note(prompts, reference, slugs) if held_out else None
    store = Store.from_settings(settings)
    if answers_from:
        results = stored_answers(store, answers_from, items, prompts)
        model = f"answers of eval {answers_from}"
    else:
        # With --save-answers, the personas a killed run already answered are kept, not asked again.
        done = answered_personas(save_answers, items, prompts) if save_answers else {}
        on_phase("Asking the checklist", len(items) * len(prompts.personas))
        with ExitStack() as stack:
            panel = stack.enter_context(open_panel(settings, raw, require=False))
            keep = stack.enter_context(appending_answers(save_answers)) if save_answers else None
            checklists = {n: p.checklist for n, p in prompts.personas.items()}
            results = collect_answers(panel, items, on_persona, checklists, done=done, keep=keep)
            model = ", ".join(sorted({c.model for c in panel.clients.values()}))
    if save_answers:
        write_answers(save_answers, results)
    summary: dict = {}
    if not held_out:
        if settings.catalogue_facts:
            from . import catalogue

            facts = catalogue.reference_facts([i.card for i in items], catalogue.reference_shipped(items))
            with_facts = catalogue.with_fact_items(prompts, catalogue.FACTS)
            fed = catalogue.with_fact_answers(results, facts, catalogue.FACTS)
            oof = with_predictions(fed, checklist_predictions(with_facts, fed, oof=True))
        else:
            oof = with_predictions(results, checklist_predictions(prompts, results, oof=True))
        oof_personas = persona_figures(oof)
        oof_intervals = intervals(oof, counted=counted_personas(oof_personas, settings.count_kappa_min))
        summary["out_of_fold"] = {**panel_figures(oof), "seats": oof_personas, "intervals": oof_intervals}
        summary["counted"] = counted_figures(oof, oof_personas, settings.count_kappa_min)
    if write_weights:
        # Written before the model's own figures are taken, so those figures are the new weights'.
        write_fitted(settings, prompts, keys, results, oof, oof_intervals, command)
        prompts, _ = calibrations.calibrated_prompts(
            raw, settings.calibrations_dir, keys, settings.uncalibrated_points
        )
    files = with_predictions(results, checklist_predictions(prompts, results, oof=False))
    summary["persona_files"] = {
        **panel_figures(files),
        "seats": persona_figures(files),
        "intervals": intervals(files),
        "fit": fit or fit_note(prompts, reference, slugs),
    }
    if held_out:
        # The personas that count are those the calibration's own fit counts (its recorded
        # out-of-fold kappa), never judged from this file's labels, which nothing may learn from.
        counted = calibration_counted(settings, prompts, keys)
        summary["held_out_counted"] = {
            "kappa_min": settings.count_kappa_min,
            "counted": sorted(counted),
            "not_counted": sorted(set(prompts.personas) - counted),
            **panel_figures(files, counted),
            "intervals": intervals(files, counted=counted),
        }
    summary["explanations"] = explanation_figures(prompts, files, {i.card.slug: i.card for i in items})
    # The rows stored (and whose takes are checked) are the judged ones: out-of-fold, or when
    # held out the calibration's own.
    judged = files if held_out else oof
    if takes:
        on_phase("Writing takes", takes_to_check(items, judged, takes))
        with open_panel(settings, raw, require=False) as panel:
            judged, summary["takes"] = check_takes(panel, items, judged, takes, on_persona)
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    eval_id = store.save_eval(str(reference), model, prompt_hash, 1, summary, judged)
    return EvalRun(eval_id=eval_id, summary=summary)


def run_holistic_eval(
    settings: Settings,
    reference: Path,
    samples: int = 3,
    on_persona: OnPersona = quiet,
    on_phase: Callable[[str, int], None] = lambda what, total: None,
) -> EvalRun:
    """The holistic prompt on every labelled card, `samples` draws per persona (median kept)."""
    items = load_reference(reference)
    prompts = load_prompts(settings.prompts_dir)
    on_phase(f"Drawing {samples} takes per persona", len(items) * len(prompts.personas))
    results, similarities = [], []
    with open_panel(settings, prompts) as panel:
        for item in items:
            takes = []
            for persona in prompts.personas:
                draws = [panel.draw(persona, item.card) for _ in range(samples)]
                result, take = judge_item(item, persona, draws)
                results.append(result)
                takes.append(take)
                on_persona("drew", item.card.slug, persona)
            sim = panel_similarity(takes, item.card)
            if sim is not None:
                similarities.append(sim)
        model = ", ".join(sorted({c.model for c in panel.clients.values()}))
    summary = summarise(results, similarities)
    summary["targets"] = {**panel_figures(results), "seats": persona_figures(results)}
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    store = Store.from_settings(settings)
    eval_id = store.save_eval(str(reference), model, prompt_hash, samples, summary, results)
    return EvalRun(eval_id=eval_id, summary=summary)


def calibration_counted(settings: Settings, prompts: PromptSet, keys: dict[str, ModelKey]) -> set[str]:
    """The personas whose verdicts count with the model's calibration as it stands: by the
    out-of-fold kappa its fit recorded, as a review decides (a persona with no fitted calibration
    counts, as in a review)."""
    counted = set()
    for name, p in prompts.personas.items():
        key = keys.get(name)
        entry = calibrations.find_fitted(settings.calibrations_dir, key, name, p.version) if key else None
        if calibrations.persona_standing(entry.figures if entry else {}, p.title, settings.count_kappa_min)[
            0
        ]:
            counted.add(name)
    return counted
