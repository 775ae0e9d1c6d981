"""Build the whole static site for 10,000 tools and 50,000 takes, then publish after one review.

Usage: .venv/bin/python bench/site_bench.py [--tools 10000] [--takes 50000] [--neighbours 5] [--processes 0]
The store is filled in bulk as bench/analytics_bench.py does (Parquet through
Store.load_parquet); each build runs in a fresh process, so its peak memory (VmHWM) is the
build's own (and a forked renderer's, the largest, beside it). Prints: the full build (time,
CPU of the build and its renderers, files, peak memory), a rebuild with nothing changed,
and publishing after one new review (files written, time), then after a second review in the
same week (the first of a week also adds the week's digest page and a line to the archive); the
targets are under 60 s for the full build and at most 20 files and 2 s after one review.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def build(db: str, out: str, neighbours: int, review_one: str, processes: int) -> dict[str, float]:
    import os

    os.environ["SHIPSKIP_OUT_DIR"] = out
    os.environ["SHIPSKIP_SITE_PROCESSES"] = str(processes)
    os.environ["SHIPSKIP_COMPARE_NEIGHBOURS"] = str(neighbours)
    from shipskip import site
    from shipskip.settings import get_settings
    from shipskip.store import Store

    store = Store(db)
    if review_one:
        from conftest import make_card, make_take

        name = review_one.replace("-", " ").title()
        card = make_card(slug=review_one, name=name, category="Agents")
        takes = [make_take(p, "ship", 75, f"{name} formats demo data for developers.")
                 for p in ("builder", "skeptic", "futurist", "creator", "founder")]  # fmt: skip
        store.commit_review(store.begin_run(card), card, takes)
    t, cpu = time.perf_counter(), time.process_time()
    report = site.build(store, get_settings())
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += children.ru_utime + children.ru_stime  # the forked renderers' share
    hwm = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM"))
    return {"s": took, "cpu": cpu, "written": len(report.written), "pages": report.pages, "left_out": len(report.left_out),
            "rss_mb": int(hwm.split()[1]) / 1024, "child_mb": children.ru_maxrss / 1024}  # fmt: skip


def _report(results: object, *args: object) -> None:
    results.put(build(*args))  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", type=int, default=10_000)
    ap.add_argument("--takes", type=int, default=50_000)
    ap.add_argument("--neighbours", type=int, default=5)
    ap.add_argument("--processes", type=int, default=0, help="SHIPSKIP_SITE_PROCESSES (0: one per CPU)")
    args = ap.parse_args()

    from analytics_bench import generate

    from shipskip.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, args.takes, args.tools)
        store = Store(folder / "bench.duckdb")
        for name in ("tools", "tool_versions", "runs", "takes"):
            store.load_parquet(name, folder / f"{name}.parquet")
        print(
            f"store: {args.tools:,} tools, {args.takes:,} takes; {args.neighbours} comparisons per tool;"
            f" {args.processes} rendering process(es)"
        )
        ctx = multiprocessing.get_context("spawn")
        db, out = str(folder / "bench.duckdb"), str(folder / "out")
        # The stored runs end before this week, so the first review is the first of its week (a
        # new digest page, and the archive gains the week); the second shows the usual day.
        for label, review_one in (("full build", ""), ("rebuild, nothing changed", ""),
                                  ("publish after one review", "bench-new-tool"),
                                  ("  another the same week", "bench-other-tool")):  # fmt: skip
            # Its own (non-daemonic) process, which may fork renderers of its own.
            results = ctx.Queue()
            proc = ctx.Process(
                target=_report, args=(results, db, out, args.neighbours, review_one, args.processes)
            )
            proc.start()
            r = results.get()
            proc.join()
            print(
                f"{label:<26} {r['s']:7.2f} s (CPU {r.get('cpu', 0):6.2f} s)  {r['written']:>7,} files written"
                f" of {r['pages']:,} pages"
                f"  peak memory {r['rss_mb']:5.0f} MB"
                + (f" (largest renderer {r['child_mb']:.0f} MB)" if r["child_mb"] else "")
                + (f"  ({r['left_out']} left out)" if r["left_out"] else "")
            )
        size = sum(f.stat().st_size for f in (folder / "out").rglob("*") if f.is_file())
        print(f"site on disk: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
