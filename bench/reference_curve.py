"""How the checklist's quality grows with labelled tools, and which answers carry any signal.

Usage: .venv/bin/python bench/reference_curve.py [--test 20] [--splits 60] [--sizes 20,40,60,81]

Offline, from the committed answers (data/reference/answers-smollm2-135m.jsonl):

1. Learning curve. For each split, `--test` tools are set aside; weights are fitted (as
   `--write-weights` fits them) on the first n of the rest and judged on the set-aside tools,
   which no fit saw. Figures are averaged over the splits.
2. Separation. For each seat, the AUC of every answer and card fact (and the yes-rate)
   between the tools the reference ships and those it skips, over the whole set: 0.5 is no
   signal; an item that counts against a tool should sit below 0.5.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shipskip.calibrate import feature_matrix, fit, predict  # noqa: E402
from shipskip.evaluate import (  # noqa: E402
    load_reference,
    observations,
    panel_figures,
    seat_figures,
    stored_answers,
    with_predictions,
)
from shipskip.personas import load_prompts  # noqa: E402


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a shipped tool's value exceeds a skipped one's (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(ROOT / "data" / "reference" / "panel.jsonl"))
    ap.add_argument("--answers", default=str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl"))
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--splits", type=int, default=60)
    ap.add_argument("--sizes", default="20,40,60,81")
    args = ap.parse_args()

    items = load_reference(Path(args.reference))
    prompts = load_prompts(ROOT / "prompts")
    results = stored_answers(None, args.answers, items, prompts)
    slugs = [i.card.slug for i in items]
    sizes = [int(n) for n in args.sizes.split(",") if int(n) <= len(slugs) - args.test]

    print(f"learning curve: {len(slugs)} tools, {args.test} held out per split, {args.splits} splits")
    print(f"{'fitted on':>9}  {'Spearman':>8}  {'bal. acc.':>9}  kappa " + " / ".join(prompts.personas))
    for n in sizes:
        spear, bal, kappa = [], [], {p: [] for p in prompts.personas}
        for seed in range(args.splits):
            order = slugs[:]
            random.Random(seed).shuffle(order)
            test, train = set(order[: args.test]), set(order[args.test : args.test + n])
            preds = {}
            for persona, p in prompts.personas.items():
                obs = observations(results, persona)
                cal = fit(p.checklist, [o for o in obs if o.slug in train])
                fitted = p.checklist.model_copy(update={"calibration": cal})
                preds.update({(o.slug, persona): predict(fitted, o) for o in obs if o.slug in test})
            judged = with_predictions([r for r in results if r.slug in test], preds)
            figures = panel_figures(judged)
            spear.append(figures["panel_ship_pct_spearman"])
            bal.append(figures["ship_balanced_accuracy"])
            for persona, f in seat_figures(judged).items():
                kappa[persona].append(f["kappa"])
        seats = " / ".join(f"{mean(v):.2f}" for v in kappa.values())
        print(f"{n:>9}  {mean(spear):>8.2f}  {mean(bal):>9.2f}  {seats}")

    print("\nseparation (AUC, ship against skip, whole set); items that count against should sit below 0.5")
    for persona, p in prompts.personas.items():
        obs = [o for o in observations(results, persona) if o.ref_verdict in ("ship", "skip")]
        names, x = feature_matrix(p.checklist, obs)
        counts = {i.id: i.counts for i in p.checklist.items}
        ship = [k for k, o in enumerate(obs) if o.ref_verdict == "ship"]
        skip = [k for k, o in enumerate(obs) if o.ref_verdict == "skip"]
        cells = []
        for j, name in enumerate(names):
            if name == "relevance" or not ship or not skip:
                continue
            value = auc([x[k, j] for k in ship], [x[k, j] for k in skip])
            cells.append((value, f"{name} ({counts.get(name, 'either')}) {value:.2f}"))
        print(
            f"  {persona} ({len(ship)} ship, {len(skip)} skip): "
            + ", ".join(c for _, c in sorted(cells, reverse=True))
        )


if __name__ == "__main__":
    main()
