"""How close an ingest runs to a provider's rate limit, and how often it runs into it.

A fake OpenAI-compatible server in its own process answers after a fixed latency and allows
at most N requests in each one-second window: beyond them it answers 429 with Retry-After and
OpenAI's x-ratelimit-* headers, as every answer carries them. `shipskip ingest` reviews new
tools against it with SHIPSKIP_LLM_CONCURRENCY above what the limit allows, so without the
rate governor in llm.py it would run into 429s all the time. Printed: requests/s answered while
busy (first to last request), the share of requests answered 429, and takes that failed.

Usage: .venv/bin/python bench/rate_limit_bench.py [--tools 200] [--limit 50] [--latency 0.2]
                                                  [--concurrency 16] [--scoring holistic|checklist]
Targets (issue 31): at least 90% of the limit answered (45 of 50 requests/s), at most 2% of
requests answered 429, no take failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ingest_bench import ingest, run_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", type=int, default=200)
    ap.add_argument("--limit", type=int, default=50, help="requests the provider allows per second")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--scoring", choices=["holistic", "checklist"], default="holistic")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipskip-rate-bench-"))
    store = {"SHIPSKIP_CALIBRATIONS_DIR": str(work / "calibrations")}
    wall, reqs = ingest(args.tools, args.latency, args.concurrency, args.scoring, work, store, args.limit)
    env = {
        **os.environ,
        **store,
        "SHIPSKIP_DB_PATH": str(run_dir(work, args.tools, args.latency) / "bench.duckdb"),
    }
    env.pop("PREFECT_API_URL", None)
    answered = sorted(r["t"] for r in reqs if r.get("status") != 429)
    limited = sum(1 for r in reqs if r.get("status") == 429)
    times = sorted(r["t"] for r in reqs)
    busy = times[-1] - times[0] if len(times) > 1 else float("nan")
    rate = (len(answered) - 1) / busy if busy else float("nan")
    failed = subprocess.run(
        [sys.executable, "-m", "shipskip", "sql", "SELECT count(*) FILTER (WHERE error IS NOT NULL) AS failed, "
         "count(*) AS takes FROM takes", "--format", "csv"],
        env=env, capture_output=True, text=True, timeout=600,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    capacity = args.concurrency / args.latency
    print(f"machine: {os.cpu_count()} cores; scoring {args.scoring}; {args.tools} tools")
    print(f"provider: {args.latency * 1000:.0f} ms latency, limit {args.limit} requests/s; "
          f"concurrency {args.concurrency} (could send {capacity:.0f}/s)")  # fmt: skip
    print(f"  wall {wall:.1f} s, {len(reqs)} requests, busy {busy:.1f} s")
    print(f"  answered requests/s while busy {rate:.1f} of {args.limit} ({100 * rate / args.limit:.0f}%)")
    print(f"  answered 429: {limited} of {len(reqs)} ({100 * limited / max(1, len(reqs)):.2f}%)")
    print(f"  takes failed, takes: {failed}")


if __name__ == "__main__":
    main()
