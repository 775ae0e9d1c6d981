"""Do the explanations on the pages ever contradict the card? Counts the takes whose "for /
against / lacking" list one thing the card settles on two sides, list as lacking what the
card's facts assert, or contradict a card fact at all (shipskip.checklist.explanation_faults).

Usage: .venv/bin/python bench/explanation_check.py [--db data/shipskip.duckdb] [--reference]

`--db`: every current checklist take in a store (the demo's, by default), explained as it was
stored, as the pages show it. `--reference`: the 101 reference cards with the embedded
model's stored answers (data/reference/answers-smollm2-135m.jsonl) and the persona files'
weights, as `shipskip eval --answers` reports them; offline, a few seconds. `--old-rule` adds
the same answers explained by the rule before issue 26 (met above the take's own mean answer,
no settling fact), for comparison.
Usage: .venv/bin/python bench/explanation_check.py --reference --old-rule
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shipskip.calibrations import with_shipped  # noqa: E402
from shipskip.checklist import EXPLANATION_FAULTS, explanation_faults  # noqa: E402
from shipskip.eval_figures import checklist_predictions, explanation_figures, with_predictions  # noqa: E402
from shipskip.models import Criterion  # noqa: E402
from shipskip.personas import PromptSet, load_prompts  # noqa: E402
from shipskip.reference import load_reference, stored_answers  # noqa: E402
from shipskip.store import Store  # noqa: E402


def _old_rule(criteria: list[Criterion]) -> list[Criterion]:
    """The criteria as they were explained before: against the take's own mean answer."""
    given = [c.p_yes for c in criteria if c.source != "card" and c.p_yes is not None]
    mean = sum(given) / len(given) if given else 0.5
    return [c if c.source == "card" else c.model_copy(update={"baseline": mean, "settled_by": None})
            for c in criteria]  # fmt: skip


def reference(prompts: PromptSet, old_rule: bool) -> None:
    items = load_reference(ROOT / "data" / "reference" / "panel.jsonl")
    answers = str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    results = stored_answers(None, answers, items, prompts)
    spoke = with_predictions(results, checklist_predictions(prompts, results, oof=False))
    print(
        f"reference ({len(items)} cards):",
        explanation_figures(prompts, spoke, {i.card.slug: i.card for i in items}),
    )
    if old_rule:
        found = Counter()
        rows = [r for r in spoke if r.verdict in ("ship", "skip") and r.criteria]
        for r in rows:
            found.update(explanation_faults(prompts.personas[r.persona].checklist, _old_rule(r.criteria)))
        print(
            f"reference, old rule: {{'takes': {len(rows)}, "
            + ", ".join(f"'{f}': {found[f]}" for f in EXPLANATION_FAULTS)
            + "}"
        )


def store(prompts: PromptSet, db: Path, old_rule: bool) -> None:
    s = Store(db)
    found: Counter[str] = Counter()
    old: Counter[str] = Counter()
    takes = 0
    for row in s.query("SELECT slug FROM tools ORDER BY slug"):
        for t in s.current_takes(row["slug"]):
            if t.abstained or not t.criteria or t.persona not in prompts.personas:
                continue
            takes += 1
            checklist = prompts.personas[t.persona].checklist
            faults = explanation_faults(checklist, t.criteria)
            found.update(faults)
            old.update(explanation_faults(checklist, _old_rule(t.criteria)))
            if faults:
                print(f"  {row['slug']} · {t.persona}: {', '.join(sorted(faults))} ({t.why})")
    print(f"{db}: {{'takes': {takes}, " + ", ".join(f"'{f}': {found[f]}" for f in EXPLANATION_FAULTS) + "}")
    if old_rule:
        print(
            f"{db}, old rule: {{'takes': {takes}, "
            + ", ".join(f"'{f}': {old[f]}" for f in EXPLANATION_FAULTS)
            + "}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=None, help="a store whose current takes to check")
    ap.add_argument("--reference", action="store_true", help="the 101 reference cards, stored answers")
    ap.add_argument(
        "--old-rule", action="store_true", help="the same answers by the rule before issue 26 too"
    )
    args = ap.parse_args()
    # Scored and explained as the embedded model is: with the calibration that ships.
    prompts = with_shipped(load_prompts(ROOT / "prompts"))
    if args.reference:
        reference(prompts, args.old_rule)
    if args.db or not args.reference:
        store(prompts, args.db or ROOT / "data" / "shipskip.duckdb", args.old_rule)


if __name__ == "__main__":
    main()
