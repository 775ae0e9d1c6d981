"""How busy an ingest keeps the provider, and what it costs per tool.

A fake OpenAI-compatible server answers on loopback after a fixed latency, in its own process;
`shipskip ingest` reviews N new tools against it, as a user runs it (its own temporary Prefect
API included). Printed:
- requests/s while busy (first to last request) against the provider's capacity, which is
  concurrency / latency;
- the load average around that run, and the CPU seconds of the ingest and its Prefect API per
  tool (what other work on the machine, such as the votes of bench/vote_bench.py, competes with);
- per-tool overhead at zero latency: (wall for N tools - wall for 1 tool) / (N - 1), and the
  same for CPU seconds;
- wall times.

Usage: .venv/bin/python bench/ingest_bench.py [--tools 200] [--latency 0.2] [--concurrency 16]
                                              [--scoring holistic|checklist] [--lake] [--busy-only]
                                              [--workers 3]
Targets (issue 13): >= 90% of capacity while busy; <= 0.25 s overhead per tool. Issue 31: the
same on a lake; --workers 3 on a lake, together at least 2.7x one worker, no tool reviewed twice.
With --lake every ingest writes a fresh DuckLake on a PostgreSQL catalog this bench starts.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reliability_helpers import logged_requests, start_fake_process, write_cards  # noqa: E402


def run_dir(work: Path, n: int, latency: float) -> Path:
    """Where one `ingest` keeps its cards, request log and database."""
    return work / f"n{n}-l{latency}"


def ingest(
    n: int,
    latency: float,
    concurrency: int,
    scoring: str,
    work: Path,
    store_env: dict[str, str],
    rate_limit: int = 0,
    cpu: list[float] | None = None,
) -> tuple[float, list[dict]]:
    """`shipskip ingest` of n new cards against the fake provider in its own process (allowing
    `rate_limit` requests a second where set): its wall time and the requests it logged. `cpu`
    gets the CPU seconds of the ingest and the processes it started (its Prefect API), not the
    fake provider's."""
    run = run_dir(work, n, latency)
    run.mkdir()
    write_cards(run / "inbox", n)
    log = run / "requests.jsonl"
    server, url = start_fake_process(latency, log, rate_limit=rate_limit)
    env = {
        **os.environ, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_MODEL": "fake-model", "SHIPSKIP_SCORING": scoring,
        "SHIPSKIP_DB_PATH": str(run / "bench.duckdb"), "SHIPSKIP_LLM_CONCURRENCY": str(concurrency),
        "SHIPSKIP_MAX_NEW_PER_RUN": str(max(n, 1)),
        # The fake model's label-free calibration is measured once and kept: here, not in data/.
        "SHIPSKIP_CALIBRATIONS_DIR": str(run / "calibrations"), **store_env,
    }  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    try:
        started, used = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-m", "shipskip", "ingest", str(run / "inbox")], env=env,
                              capture_output=True, text=True, timeout=3600)  # fmt: skip
        wall = time.perf_counter() - started
        if cpu is not None:
            cpu.append(_children_cpu() - used)  # before the fake provider is waited for
    finally:
        server.kill()
        server.wait()
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stderr[-2000:]}")
    return wall, logged_requests(log)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--scoring", choices=["holistic", "checklist"], default="holistic")
    ap.add_argument("--lake", action="store_true", help="a DuckLake on a PostgreSQL catalog, not the file")
    ap.add_argument("--busy-only", action="store_true", help="only the requests/s, not the zero-latency runs")
    ap.add_argument(
        "--workers", type=int, default=1,
        help="with --lake: after the one-worker run, this many ingests of one feed on one lake at once,"
        " each with its own provider",
    )  # fmt: skip
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipskip-ingest-bench-"))
    postgres = None
    if args.lake:
        from pgserver import start_postgres

        postgres = start_postgres()

    def store_env(name: str) -> dict[str, str]:
        if postgres is None:
            return {}
        return {"SHIPSKIP_CATALOG": postgres.conninfo(postgres.new_database()),
                "SHIPSKIP_LAKE_DATA_PATH": str(work / f"lake-{name}")}  # fmt: skip

    try:
        run(args, work, store_env)
    finally:
        if postgres is not None:
            postgres.stop()


def run(args: argparse.Namespace, work: Path, store_env: Callable[[str], dict[str, str]]) -> None:
    cpu: list[float] = []
    load = os.getloadavg()[0]
    wall, reqs = ingest(
        args.tools, args.latency, args.concurrency, args.scoring, work, store_env("busy"), cpu=cpu
    )
    loads = (load, os.getloadavg()[0])
    times = sorted(r["t"] for r in reqs)
    busy = times[-1] - times[0] if len(times) > 1 else float("nan")
    rate = (len(times) - 1) / busy if busy else float("nan")
    capacity = args.concurrency / args.latency if args.latency else float("inf")
    store = "DuckLake on PostgreSQL" if args.lake else "the DuckDB file"
    print(
        f"machine: {os.cpu_count()} cores; scoring {args.scoring}, {len(reqs) / args.tools:.0f} requests"
        f" per tool; {store}"
    )
    print(f"{args.tools} tools at {args.latency * 1000:.0f} ms latency, concurrency {args.concurrency}:")
    print(f"  wall {wall:.1f} s, {len(reqs)} requests, busy {busy:.1f} s")
    print(f"  requests/s while busy {rate:.1f} of capacity {capacity:.0f} ({100 * rate / capacity:.0f}%)")
    print(f"  load average {loads[0]:.1f} at its start, {loads[1]:.1f} at its end")
    print(
        f"  CPU of the ingest and its Prefect API {cpu[0]:.1f} s, {cpu[0] / args.tools:.3f} s a tool (start included)"
    )
    if args.lake and args.workers > 1:
        workers(args, work, store_env("workers"), rate)
    if args.busy_only:
        return
    wall_n, _ = ingest(args.tools, 0.0, args.concurrency, args.scoring, work, store_env("many"), cpu=cpu)
    wall_1, _ = ingest(1, 0.0, args.concurrency, args.scoring, work, store_env("one"), cpu=cpu)
    overhead = (wall_n - wall_1) / (args.tools - 1) if args.tools > 1 else float("nan")
    print("zero latency:")
    print(f"  wall for {args.tools} tools {wall_n:.1f} s, for 1 tool {wall_1:.1f} s")
    print(f"  overhead per tool {overhead:.3f} s, per take {overhead / 5 * 1000:.0f} ms")
    if args.tools > 1:
        print(f"  CPU per tool beyond the first {(cpu[1] - cpu[2]) / (args.tools - 1):.3f} s")


def workers(args: argparse.Namespace, work: Path, store: dict[str, str], one: float) -> None:
    """Several `shipskip ingest` processes on one feed and one lake at once, each against its
    own fake provider (as machines with their own keys would be): their requests/s together
    against one worker's, and whether any tool was reviewed twice (each tool's requests are
    named by its slug in the prompt, so a second review shows as a second set)."""
    run = work / "workers"
    write_cards(run / "inbox", args.tools)
    procs, servers, logs = [], [], []
    load = os.getloadavg()[0]
    try:
        for k in range(args.workers):
            log = run / f"requests-{k}.jsonl"
            server, url = start_fake_process(args.latency, log)
            servers.append(server)
            logs.append(log)
            env = {
                **os.environ, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_MODEL": "fake-model",
                "SHIPSKIP_SCORING": args.scoring, "SHIPSKIP_LLM_CONCURRENCY": str(args.concurrency),
                "SHIPSKIP_MAX_NEW_PER_RUN": str(args.tools), "SHIPSKIP_DB_PATH": str(run / f"unused-{k}.duckdb"),
                "SHIPSKIP_CALIBRATIONS_DIR": str(run / f"calibrations-{k}"), **store,
            }  # fmt: skip
            env.pop("PREFECT_API_URL", None)
            procs.append(
                subprocess.Popen([sys.executable, "-m", "shipskip", "ingest", str(run / "inbox")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=open(run / f"ingest-{k}.err", "w"))  # noqa: SIM115
            )  # fmt: skip
        codes = [p.wait(timeout=3600) for p in procs]
    finally:
        for server in servers:
            server.kill()
            server.wait()
    reqs = [r for log in logs for r in logged_requests(log)]
    times = sorted(r["t"] for r in reqs)
    busy = times[-1] - times[0] if len(times) > 1 else float("nan")
    rate = (len(times) - 1) / busy if busy else float("nan")
    per_tool = len(reqs) / args.tools
    print(f"{args.workers} workers on one lake, one feed of {args.tools} tools, each its own provider:")
    print(f"  exit codes {codes}; {len(reqs)} requests ({per_tool:.2f} a tool: 5 holistic or 50 checklist"
          f" when each tool is reviewed once), busy {busy:.1f} s")  # fmt: skip
    print(f"  requests/s while busy {rate:.1f}, {rate / one:.2f}x one worker's {one:.1f}")
    print(f"  load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
