"""How the checklist's quality grows with labelled tools, and which answers carry any signal.

Usage: .venv/bin/python bench/reference_curve.py [--test 20] [--splits 60] [--sizes 20,40,60,81]
       .venv/bin/python bench/reference_curve.py --labels [--base 40] [--added 0,10,20,30,41] [--splits 20]

Offline, from the committed answers (data/reference/answers-smollm2-135m.jsonl):

1. Learning curve. For each split, `--test` tools are set aside; weights are fitted (as
   `--write-weights` fits them) on the first n of the rest and judged on the set-aside tools,
   which no fit saw. Figures are averaged over the splits.
2. With `--labels`: editors' labels added. For each split, `--test` tools are set aside, the
   calibration's reference is `--base` of the rest, and editors label N more of the remaining
   tools (their reference labels stand in for the editors' calls), in two orders: at random,
   and least certain first as `shipskip queue` ranks them (seats most evenly split under the
   reference fit, then scores nearest 60). Agreement and kappa are judged on the set-aside
   tools, which no fit saw; the last line gives the gain at each N over N = 0, paired by split,
   with the 2.5-97.5 percentile range of that gain over the splits.
3. Separation. For each seat, the AUC of every answer and card fact (and the yes-rate)
   between the tools the reference ships and those it skips, over the whole set: 0.5 is no
   signal; an item that counts against a tool should sit below 0.5.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shipskip.calibrate import feature_matrix, fit, predict  # noqa: E402
from shipskip.eval_figures import observations, panel_figures, persona_figures, with_predictions  # noqa: E402
from shipskip.personas import load_prompts  # noqa: E402
from shipskip.reference import load_reference, stored_answers  # noqa: E402


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
    ap.add_argument("--labels", action="store_true", help="the curve with editors' labels added")
    ap.add_argument("--base", type=int, default=40, help="--labels: reference tools the fit starts from")
    ap.add_argument("--added", default="0,10,20,30,41", help="--labels: editors' labels added")
    args = ap.parse_args()

    items = load_reference(Path(args.reference))
    prompts = load_prompts(ROOT / "prompts")
    results = stored_answers(None, args.answers, items, prompts)
    slugs = [i.card.slug for i in items]
    if args.labels:
        label_curve(args, prompts, results, slugs)
        return
    sizes = [int(n) for n in args.sizes.split(",") if int(n) <= len(slugs) - args.test]

    print(f"learning curve: {len(slugs)} tools, {args.test} held out per split, {args.splits} splits")
    print(f"{'fitted on':>9}  {'Spearman':>8}  {'bal. acc.':>9}  kappa " + " / ".join(prompts.personas))
    for n in sizes:
        spear, bal, kappa = [], [], {p: [] for p in prompts.personas}
        for seed in range(args.splits):
            order = slugs[:]
            random.Random(seed).shuffle(order)
            test, train = set(order[: args.test]), set(order[args.test : args.test + n])
            judged = fit_and_judge(prompts, results, train, test)
            figures = panel_figures(judged)
            spear.append(figures["panel_ship_pct_spearman"])
            bal.append(figures["ship_balanced_accuracy"])
            for persona, f in persona_figures(judged).items():
                kappa[persona].append(f["kappa"])
        per_persona = " / ".join(f"{mean(v):.2f}" for v in kappa.values())
        print(f"{n:>9}  {mean(spear):>8.2f}  {mean(bal):>9.2f}  {per_persona}")

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


def fit_and_judge(prompts, results, train: set[str], judged: set[str]) -> list:
    """Fit every seat on `train`, predict the tools in `judged`: results with the predictions."""
    preds = {}
    for persona, p in prompts.personas.items():
        obs = observations(results, persona)
        cal = fit(p.checklist, [o for o in obs if o.slug in train])
        fitted = p.checklist.model_copy(update={"calibration": cal})
        preds.update({(o.slug, persona): predict(fitted, o) for o in obs if o.slug in judged})
    return with_predictions([r for r in results if r.slug in judged], preds)


def least_certain_first(judged: list) -> list[str]:
    """Tools in `shipskip queue` order: seats most evenly split, then scores nearest 60."""
    by_tool: dict[str, list] = {}
    for r in judged:
        by_tool.setdefault(r.slug, []).append(r)

    def key(slug: str) -> tuple[float, float, str]:
        rows = by_tool[slug]
        ship = sum(r.verdict == "ship" for r in rows)
        skip = sum(r.verdict == "skip" for r in rows)
        split = abs(100 * ship / (ship + skip) - 50) if ship + skip else 0.0
        margins = [abs(r.score - 60) for r in rows if r.score is not None]
        return split, statistics.fmean(margins) if margins else 100.0, slug

    return sorted(by_tool, key=key)


def label_curve(args: argparse.Namespace, prompts, results, slugs: list[str]) -> None:
    added = [int(n) for n in args.added.split(",") if int(n) <= len(slugs) - args.test - args.base]
    print(
        f"editors' labels: {len(slugs)} tools, {args.test} held out per split, fit starts from "
        f"{args.base} reference tools, {args.splits} splits"
    )
    print(f"{'order':<15} {'labels':>6}  {'agreement':>9}  {'kappa':>6}  {'Spearman':>8}  {'bal. acc.':>9}")
    gains: dict[tuple[str, int], list[float]] = {}
    for order_name in ("random", "least certain"):
        rows: dict[int, list[tuple[float, float, float, float]]] = {n: [] for n in added}
        for seed in range(args.splits):
            order = slugs[:]
            random.Random(seed).shuffle(order)
            test, base, pool = (
                order[: args.test],
                order[args.test : args.test + args.base],
                order[args.test + args.base :],
            )
            if order_name == "least certain":
                pool = least_certain_first(fit_and_judge(prompts, results, set(base), set(pool)))
            for n in added:
                judged = fit_and_judge(prompts, results, set(base) | set(pool[:n]), set(test))
                per_persona = persona_figures(judged)
                figures = panel_figures(judged)
                rows[n].append((
                    statistics.fmean(f["verdict_agreement"] for f in per_persona.values()),
                    mean([f["kappa"] for f in per_persona.values()]),
                    figures["panel_ship_pct_spearman"] if figures["panel_ship_pct_spearman"] is not None else float("nan"),
                    figures["ship_balanced_accuracy"] if figures["ship_balanced_accuracy"] is not None else float("nan"),
                ))  # fmt: skip
        for n in added:
            cols = list(zip(*rows[n], strict=True))
            print(
                f"{order_name:<15} {n:>6}  {mean(list(cols[0])):>9.3f}  {mean(list(cols[1])):>6.3f}"
                f"  {mean(list(cols[2])):>8.2f}  {mean(list(cols[3])):>9.2f}"
            )
            gains[(order_name, n)] = [a[0] - b[0] for a, b in zip(rows[n], rows[0], strict=True)]
    print(
        "gain in mean seat agreement over no labels, paired by split (mean, 2.5-97.5 percentile over splits):"
    )
    for (order_name, n), g in gains.items():
        if n == 0:
            continue
        xs = sorted(g)
        lo, hi = xs[int(0.025 * (len(xs) - 1))], xs[math.ceil(0.975 * (len(xs) - 1))]
        print(f"  {order_name:<15} +{n:<3} {statistics.fmean(g):+.3f}  [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
