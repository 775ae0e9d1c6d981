"""Calibration per model against a decisive provider (issue 30's "another model" target).

The fake provider of the tests answers every checklist question with P(yes) 0.02 or 0.98, the
way the persona's reference verdict points with one answer in four the other way. `shipskip
calibrate`'s use case runs on the first N reference tools; then the same answers are scored
three ways: with SmolLM2's shipped weights (what every model got before), with the generic
weights an uncalibrated model gets, and with the model's own calibration (in-sample and
out-of-fold). Prints the share of scores at exactly 0 or 100 and the seats' out-of-fold kappa.

    .venv/bin/python bench/calibration_bench.py --tools 40
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", type=int, default=40, help="first N tools of data/reference/panel.jsonl")
    args = ap.parse_args()

    from fakeopenai import FakeOpenAI
    from test_calibrations import decisive  # the tests' decisive provider

    from shipskip import calibrations
    from shipskip.calibration_run import calibration_results, run_calibration
    from shipskip.calibrations import ModelKey
    from shipskip.eval_figures import checklist_predictions, extreme_share, with_predictions
    from shipskip.personas import load_prompts
    from shipskip.reference import load_reference
    from shipskip.settings import get_settings

    tmp = Path(tempfile.mkdtemp(prefix="calibration-bench-"))
    ref = tmp / "ref.jsonl"
    ref.write_text(
        "".join((ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines(True)[: args.tools])
    )
    os.environ.update(
        SHIPSKIP_DB_PATH=str(tmp / "bench.duckdb"), SHIPSKIP_CALIBRATIONS_DIR=str(tmp / "calibrations"),
        SHIPSKIP_MODEL="decisive-model",
    )  # fmt: skip
    with FakeOpenAI(decisive(load_reference(ref), content_free_yes=0.5)) as fake:
        os.environ["SHIPSKIP_BASE_URL"] = fake.base_url
        settings = get_settings()
        started = time.perf_counter()
        out = run_calibration(settings, ref)
        took = time.perf_counter() - started
    prompts = load_prompts(settings.prompts_dir)
    results = calibration_results(settings, ref, ModelKey("decisive-model"))

    def share(key: ModelKey) -> float | None:
        keys = dict.fromkeys(prompts.personas, key)
        scored, _ = calibrations.calibrated_prompts(prompts, settings.calibrations_dir, keys, 70.0)
        return extreme_share(with_predictions(results, checklist_predictions(scored, results, oof=False)))

    shipped = calibrations.load_file(next(calibrations.shipped_dir().glob("*.json"))).key
    s = out.summary
    answered = sum(c.source in ("logprobs", "sampled") for r in results for c in r.criteria)
    print(f"{args.tools} tools, {answered} answers, calibrate took {took:.1f} s")
    print("scores at exactly 0 or 100:")
    print(f"  SmolLM2's shipped weights        {share(shipped)}")
    print(f"  generic weights (uncalibrated)   {share(ModelKey('no-such-model'))}")
    print(f"  own calibration, in-sample       {s['persona_files']['extreme_share']}")
    print(f"  own calibration, out-of-fold     {s['out_of_fold']['extreme_share']}")
    ci = s["out_of_fold"]["intervals"]
    for p, f in s["out_of_fold"]["seats"].items():
        print(f"  {p:9s} out-of-fold agreement {f['verdict_agreement']} {ci.get(p + '_agreement')}"
              f"  kappa {f['kappa']} {ci.get(p + '_kappa')}")  # fmt: skip
    print(
        f"panel ship % Spearman {s['out_of_fold']['panel_ship_pct_spearman']} {ci['panel_ship_pct_spearman']}"
    )


if __name__ == "__main__":
    main()
