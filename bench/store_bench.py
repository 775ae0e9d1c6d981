"""What each store write costs, on the single file and on a DuckLake with a PostgreSQL catalog.

Usage: .venv/bin/python bench/store_bench.py [--reviews 30]
One process, one thread, no model: for each of N tools, start a run (begin_run), checkpoint
five takes, and commit the review, timing each step; the lake's PostgreSQL is started and
stopped here, as the tests do. This is the database's share of what a review costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_card, make_take  # noqa: E402
from pgserver import start_postgres  # noqa: E402

from shipskip.roster import personas  # noqa: E402
from shipskip.store import Store  # noqa: E402
from shipskip.store_lake import Lake  # noqa: E402


def time_writes(store: Store, n: int) -> dict[str, float]:
    store.init()
    cost = {"begin_run": 0.0, "checkpoint (each)": 0.0, "commit_review": 0.0}
    for i in range(n):
        card = make_card(slug=f"tool-{i}", name=f"Tool {i}")
        t = time.perf_counter()
        run = store.begin_run(card, unless_reviewed=True)
        cost["begin_run"] += time.perf_counter() - t
        takes = [make_take(persona, "ship", 70) for persona in personas()]
        t = time.perf_counter()
        for take in takes:
            store.checkpoint(run, take)
        cost["checkpoint (each)"] += (time.perf_counter() - t) / len(takes)
        t = time.perf_counter()
        store.commit_review(run, card, takes)
        cost["commit_review"] += time.perf_counter() - t
    return {step: 1000 * total / n for step, total in cost.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=30)
    args = ap.parse_args()
    postgres = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lake = Lake(postgres.conninfo(postgres.new_database()), Path(tmp) / "lake")
            for name, store in (("file", Store(Path(tmp) / "bench.duckdb")),
                                ("lake", Store(Path(tmp) / "unused.duckdb", lake=lake))):  # fmt: skip
                ms = time_writes(store, args.reviews)
                steps = ", ".join(f"{step} {v:.1f} ms" for step, v in ms.items())
                per_review = ms["begin_run"] + len(personas()) * ms["checkpoint (each)"] + ms["commit_review"]
                print(f"{name}: {steps}; one review's writes {per_review:.0f} ms")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
