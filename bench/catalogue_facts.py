"""Do the catalogue facts lift the checklist? Out-of-fold, on the committed answers.

Usage: .venv/bin/python bench/catalogue_facts.py [--sets each,all]

Offline, no model call: the embedded model's stored answers on the reference
(data/reference/answers-smollm2-135m.jsonl) are fitted leave-one-tool-out (`evaluate`'s
out-of-fold fit), once as they are and once per set of catalogue facts added as extra checklist
inputs (`shipskip.catalogue`). Each reference card's catalogue is the cards above it in the file,
one a day; "how the nearest fared" reads the reference panel of those earlier cards.

A fact set is kept only where a figure with it rises above the upper end of the baseline's 95%
bootstrap interval (panel ship % Spearman, Ship balanced accuracy, or a seat's kappa) and none
falls below the lower end. Each leave-one-out run refits every seat 101 times (about 5 minutes
on one busy core); `--folds 10` refits it 10 times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shipskip.calibrate import fit, predict  # noqa: E402
from shipskip.catalogue import FACTS, reference_facts, reference_shipped, with_fact_answers, with_fact_items  # noqa: E402
from shipskip.eval_figures import (  # noqa: E402
    checklist_predictions,
    intervals,
    observations,
    panel_figures,
    persona_figures,
    with_predictions,
)
from shipskip.personas import load_prompts  # noqa: E402
from shipskip.reference import load_reference, stored_answers  # noqa: E402


def predictions(prompts, results: list, folds: int) -> dict:
    """Out-of-fold predictions: evaluate's leave-one-tool-out, or K folds by the tools' order in
    the file (every K-th tool in one fold), for a quicker run on a busy machine."""
    if not folds:
        return checklist_predictions(prompts, results, oof=True)
    order = {slug: n for n, slug in enumerate(dict.fromkeys(r.slug for r in results))}
    out = {}
    for persona, p in prompts.personas.items():
        obs = observations(results, persona)
        for f in range(folds):
            train = [o for o in obs if order[o.slug] % folds != f]
            fitted = p.checklist.model_copy(update={"calibration": fit(p.checklist, train)})
            out.update({(o.slug, persona): predict(fitted, o) for o in obs if order[o.slug] % folds == f})
    return out


def figures(oof: list) -> dict[str, float | None]:
    panel = panel_figures(oof)
    out = {"spearman": panel["panel_ship_pct_spearman"], "balanced": panel["ship_balanced_accuracy"]}
    out.update({f"{p}_kappa": f["kappa"] for p, f in persona_figures(oof).items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(ROOT / "data" / "reference" / "panel.jsonl"))
    ap.add_argument("--answers", default=str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl"))
    ap.add_argument("--sets", default="each,all", help="each (one fact at a time), all, or fact names")
    ap.add_argument("--limit", type=int, default=None, help="the first N tools only (a quick check)")
    ap.add_argument(
        "--folds", type=int, default=0,
        help="K-fold instead of leave-one-tool-out (0, the default, is evaluate's leave-one-out)",
    )  # fmt: skip
    args = ap.parse_args()

    items = load_reference(Path(args.reference))[: args.limit]
    prompts = load_prompts(ROOT / "prompts")
    results = stored_answers(None, args.answers, items, prompts)
    shipped = reference_shipped(items)
    facts = reference_facts([i.card for i in items], shipped)

    sets: list[list[str]] = []
    for word in args.sets.split(","):
        if word == "each":
            sets += [[f] for f in FACTS]
        elif word == "all":
            sets.append(list(FACTS))
        else:
            sets.append([word])

    t0 = time.monotonic()
    base_oof = with_predictions(results, predictions(prompts, results, args.folds))
    base, ci = figures(base_oof), intervals(base_oof)
    bounds = {"spearman": ci["panel_ship_pct_spearman"], "balanced": ci["ship_balanced_accuracy"]}
    bounds.update({k: ci.get(k) for k in base if k.endswith("_kappa")})
    how = f"{args.folds}-fold" if args.folds else "leave one tool out"
    print(f"{len(items)} reference tools, out-of-fold ({how}); baseline in {time.monotonic() - t0:.0f} s")
    cols = list(base)
    print(f"{'facts':<44} " + " ".join(f"{c.replace('_kappa', ''):>9}" for c in cols) + "  verdict")
    print(f"{'none (baseline)':<44} " + " ".join(f"{base[c]:>9.3f}" for c in cols))
    print(f"{'  95% interval':<44} " + " ".join(f"{f'{b[0]:.2f}..{b[1]:.2f}':>9}" for b in bounds.values()))
    for names in sets:
        aug = with_fact_items(prompts, names)
        rows = with_fact_answers(results, facts, names)
        got = figures(with_predictions(rows, predictions(aug, rows, args.folds)))
        above = [c for c in cols if got[c] is not None and bounds[c] and got[c] > bounds[c][1]]
        below = [c for c in cols if got[c] is not None and bounds[c] and got[c] < bounds[c][0]]
        verdict = "kept: lifts " + ", ".join(above) if above and not below else "dropped"
        if below:
            verdict += " (falls below: " + ", ".join(below) + ")"
        print(f"{'+ ' + ', '.join(names):<44} " + " ".join(f"{got[c]:>9.3f}" for c in cols) + f"  {verdict}")
        sys.stdout.flush()
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
