"""Where a review's store writes go on a DuckLake: each step, and the store calls inside them.

Usage: .venv/bin/python bench/lake_write_breakdown.py [--reviews 15]
One process, one thread, no model, as bench/store_bench.py, on a lake only; the lease calls,
the PostgreSQL statements and the ledger's SQL helpers are wrapped with timers, so the steps
(begin_run, five checkpoints, commit_review) split into what they spend. Per review, in ms.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_card, make_take  # noqa: E402
from pgserver import start_postgres  # noqa: E402

from shipskip import ledger, store_lake  # noqa: E402
from shipskip.roster import personas  # noqa: E402
from shipskip.store import Store  # noqa: E402

SPENT: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter[str] = collections.Counter()


def timed(label: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - started
            CALLS[label] += 1

    return wrapper


def instrument() -> None:
    for name in ("claim", "beat", "release", "put_checkpoints", "forget_checkpoints", "finish"):
        setattr(store_lake.Lake, name, timed(f"Lake.{name}", getattr(store_lake.Lake, name)))
    store_lake.Lake._execute = staticmethod(timed("PostgreSQL statement", store_lake.Lake._execute))  # type: ignore[method-assign]
    for name in ("insert_checkpoints", "upsert_tool", "insert_takes"):
        setattr(ledger, name, timed(f"ledger.{name}", getattr(ledger, name)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=15)
    n = ap.parse_args().reviews
    instrument()
    postgres = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lake = store_lake.Lake(postgres.conninfo(postgres.new_database()), Path(tmp) / "lake")
            store = Store(Path(tmp) / "unused.duckdb", lake=lake)
            store.init()
            steps: dict[str, float] = collections.defaultdict(float)
            for i in range(n + 1):  # the first review warms the connection and is not counted
                if i == 1:
                    steps.clear()
                    SPENT.clear()
                    CALLS.clear()
                card = make_card(slug=f"tool-{i}", name=f"Tool {i}")
                started = time.perf_counter()
                run = store.begin_run(card, unless_reviewed=True)
                steps["begin_run"] += time.perf_counter() - started
                takes = [make_take(seat, "ship", 70) for seat in personas()]
                started = time.perf_counter()
                for take in takes:
                    store.checkpoint(run, take)
                steps["five checkpoints"] += time.perf_counter() - started
                started = time.perf_counter()
                store.commit_review(run, card, takes)
                steps["commit_review"] += time.perf_counter() - started
            for step, total in steps.items():
                print(f"{step:28s} {1000 * total / n:7.1f} ms a review")
            print("inside them:")
            for label, total in sorted(SPENT.items(), key=lambda kv: -kv[1]):
                print(f"  {label:26s} {1000 * total / n:7.1f} ms a review, {CALLS[label] / n:.1f} calls")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
