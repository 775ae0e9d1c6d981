"""Flow: run the panel on a labelled reference set and store the figures."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from shipskip.evaluate import judge_item, load_reference, summarise
from shipskip.personas import load_prompts
from shipskip.quality import panel_similarity
from shipskip.review import open_panel
from shipskip.settings import get_settings
from shipskip.store import Store


@flow(name="evaluate-panel")
def evaluate_panel(reference: str, samples: int = 3) -> dict:
    settings = get_settings()
    items = load_reference(Path(reference))
    prompts = load_prompts(settings.prompts_dir)
    results, similarities = [], []
    with open_panel(settings, prompts) as panel:
        for item in items:
            takes = []
            for persona in prompts.personas:
                draws = [panel.ask(persona, item.card) for _ in range(samples)]
                result, take = judge_item(item, persona, draws)
                results.append(result)
                takes.append(take)
            sim = panel_similarity(takes, item.card)
            if sim is not None:
                similarities.append(sim)
        model = ", ".join(sorted({c.model for c in panel.clients.values()}))
    summary = summarise(results, similarities)
    prompt_hash = ",".join(prompts.prompt_hash(p) for p in prompts.personas)
    eval_id = Store(settings.db_path).save_eval(reference, model, prompt_hash, samples, summary, results)
    return {"eval_id": eval_id, "summary": summary}
