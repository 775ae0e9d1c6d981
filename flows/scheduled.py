"""Flows for scheduled runs and editors: review what is new in a source; rerun one persona."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.review import persona_take, review_card
from shipskip.errors import ShipskipError
from shipskip.llm import ProviderRejected
from shipskip.personas import load_prompts
from shipskip.review import open_panel
from shipskip.settings import get_settings
from shipskip.sources import read_source
from shipskip.store import Store, ToolBusy


@flow(name="review-new-tools", task_runner=ThreadPoolTaskRunner(max_workers=5))
def review_new_tools(source: str) -> dict[str, list[str]]:
    """Review each new or changed tool once; report bad entries and go on with the rest."""
    logger = get_run_logger()
    settings = get_settings()
    store = Store(settings.db_path)
    report: dict[str, list[str]] = {
        "reviewed": [], "unchanged": [], "refused": [], "deferred": [], "busy": []
    }  # fmt: skip
    for entry in read_source(source):
        # Bounded runs: what is left waits for the next run (unchanged cards cost nothing).
        full = len(report["reviewed"]) >= settings.max_new_per_run
        if entry.card is not None and full and not store.is_reviewed(entry.card):
            report["deferred"].append(entry.card.slug)
            continue
        if entry.card is None:
            logger.warning("skipped %s", entry.error)
            report["refused"].append(entry.error or entry.where)
            continue
        try:
            out = review_card(entry.card, store)
        except ProviderRejected:
            raise  # the provider refuses every tool alike: stop, and mark nothing reviewed
        except ToolBusy as exc:
            logger.info("left %s: %s", entry.card.slug, exc)
            report["busy"].append(entry.card.slug)
            continue
        except ShipskipError as exc:
            logger.warning("skipped %s: %s", entry.where, exc)
            report["refused"].append(str(exc))
            continue
        report["unchanged" if out.skipped else "reviewed"].append(entry.card.slug)
    return report


@flow(name="rerun-persona", task_runner=ThreadPoolTaskRunner(max_workers=1))
def rerun_persona(
    tool: str, persona: str, reason: str, model: str | None = None, prompt_version: str | None = None
) -> dict:
    """One persona again on one tool; the new take becomes current, the old one stays as history."""
    settings = get_settings()
    store = Store(settings.db_path)
    card = store.tool(tool)
    if card is None:
        raise ShipskipError(f"no reviewed tool with slug '{tool}'")
    prompts = load_prompts(settings.prompts_dir, versions={persona: prompt_version})
    if persona not in prompts.personas:
        raise ShipskipError(f"unknown persona '{persona}'")
    run = store.begin_run(card, kind="rerun", reason=reason)
    assert run is not None  # only a review can find its card already done
    with open_panel(settings, prompts, [persona], model_override=model) as panel:
        take = persona_take.submit(panel, store, run, persona, card, reason).result()
    if take.error:
        # A failure is not a take: the good current one stays, and the editor hears why.
        store.fail_rerun(run, take, reason)
        raise ShipskipError(f"rerun of {persona} on {tool} failed, the current take is kept: {take.error}")
    store.commit_review(run, card, [take])
    return {"tool": tool, "persona": persona, "verdict": take.verdict, "score": take.score}
