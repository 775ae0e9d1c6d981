"""Fill the shipped SmolLM2-135M calibration's out-of-fold figures from the committed answers.

Each persona's entry records its out-of-fold agreement and Cohen's kappa (with 95% bootstrap
intervals over tools), the number of tools and its ship curve: what decides whether the seat
counts on that model and its P(ship). No model runs: the embedded model's answers on the
labelled reference are in data/reference/; the weights are left as they are.

    .venv/bin/python bench/shipped_figures.py            # rewrites src/shipskip/calibrations/*.json
    .venv/bin/python bench/shipped_figures.py --dry-run  # prints the figures only
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT / "data/reference/panel.jsonl")
    ap.add_argument("--answers", default=str(ROOT / "data/reference/answers-smollm2-135m.jsonl"))
    ap.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    args = ap.parse_args()

    from shipskip import calibrations
    from shipskip.calibration_run import with_figures
    from shipskip.eval_figures import checklist_predictions, intervals, with_predictions
    from shipskip.personas import load_prompts
    from shipskip.reference import load_reference, stored_answers

    items = load_reference(args.reference)
    prompts = calibrations.with_shipped(load_prompts(ROOT / "prompts"))
    results = stored_answers(None, args.answers, items, prompts)
    oof = with_predictions(results, checklist_predictions(prompts, results, oof=True))
    oof_intervals = intervals(oof)
    for path in sorted(calibrations.shipped_dir().glob("*.json")):
        data = with_figures(calibrations.load_file(path), prompts, oof, oof_intervals)
        for e in data.entries:
            f = e.figures
            print(
                f"{e.persona}@{e.prompt_version}: agreement {f.get('verdict_agreement')} "
                f"{f.get('agreement_interval')}, kappa {f.get('kappa')} {f.get('kappa_interval')} "
                f"on {f.get('tools')} tools; ship curve {f.get('ship_curve')}"
            )
        if not args.dry_run:
            path.write_text(data.model_dump_json(indent=1) + "\n", encoding="utf-8")
            print(f"Wrote {path}")


if __name__ == "__main__":
    main()
