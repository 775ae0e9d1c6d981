"""Votes from many readers through `shipskip web` while an ingest writes to the same file.

`shipskip web` runs in its own process on a store with a few reviewed tools; `shipskip ingest`
reviews new tools against a fake provider (bench/ingest_bench.py's) in another process at the
same time. 50 clients, each with its own cookie and form token, post votes at a fixed total
rate, each vote for a random tool and choice. Printed: votes sent and their rate, 5xx and other
non-redirect answers, latency p50/p99, the votes stored against what the clients sent last for
each (client, tool) (lost and duplicated), and whether the ingest committed all its reviews.

Usage: .venv/bin/python bench/vote_bench.py [--rate 100] [--seconds 60] [--clients 50] [--ingest 200]
Targets (issue 29): 100 votes/s for 60 s from 50 clients; 0 lost, 0 duplicated, 0 5xx; p99 under
500 ms; the ingest's reviews all committed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from cdp import free_port  # noqa: E402
from reliability_helpers import start_fake_process, write_cards  # noqa: E402

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


def seed(db: Path, tools: int) -> list[str]:
    from conftest import make_card, make_take

    from shipskip.store import Store

    store = Store(db)
    slugs = []
    for i in range(tools):
        card = make_card(slug=f"voted-{i}", name=f"Voted {i}", category="Agents")
        takes = [make_take(p, "ship", 70, f"Voted {i} formats demo data for developers.") for p in PERSONAS]
        store.commit_review(store.begin_run(card), card, takes)
        slugs.append(card.slug)
    return slugs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="votes per second, all clients together")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument(
        "--ingest",
        type=int,
        default=200,
        help="new tools the concurrent ingest reviews (enough to outlast the window)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shipskip-vote-bench-"))
    db = work / "bench.duckdb"
    slugs = seed(db, 20)
    port = free_port()
    env = {**os.environ, "SHIPSKIP_DB_PATH": str(db), "SHIPSKIP_OUT_DIR": str(work / "out"),
           "SHIPSKIP_WEB_POSTS_PER_MINUTE": "1000000"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    subprocess.run([sys.executable, "-m", "shipskip", "site"], env=env, check=True, capture_output=True)
    web = subprocess.Popen([sys.executable, "-m", "shipskip", "web", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    fake, url = start_fake_process(0.05, work / "requests.jsonl")
    write_cards(work / "inbox", args.ingest)
    ingest_env = {**env, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_MODEL": "fake-model", "SHIPSKIP_SCORING": "holistic",
                  "SHIPSKIP_LLM_CONCURRENCY": "8",
                  "SHIPSKIP_CALIBRATIONS_DIR": str(work / "calibrations")}  # fmt: skip
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/index.html")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        clients = []
        for _ in range(args.clients):
            c = httpx.Client(base_url=base, timeout=30)
            page = c.get(f"/tools/{slugs[0]}.html").text
            clients.append((c, re.search(r'name="csrf" value="([^"]+)"', page).group(1)))
        sent: dict[tuple[int, str], str] = {}
        latencies: list[float] = []
        during: list[float] = []  # the votes sent while the ingest process was running
        codes: dict[int, int] = {}
        guard = threading.Lock()
        per_client = args.rate / args.clients
        stop_at = time.monotonic() + args.seconds

        def run(i: int) -> None:
            c, token = clients[i]
            rng = random.Random(i)
            next_at = time.monotonic() + rng.random() / per_client
            while next_at < stop_at:
                time.sleep(max(0.0, next_at - time.monotonic()))
                slug, choice = rng.choice(slugs), rng.choice(["ship", "skip"])
                t = time.perf_counter()
                ingesting = ingest.returncode is None  # set by the watcher below once it exits
                res = c.post(f"/vote/{slug}", data={"csrf": token, "choice": choice}, follow_redirects=False)
                took = time.perf_counter() - t
                with guard:
                    latencies.append(took)
                    if ingesting and ingest.returncode is None:
                        during.append(took)
                    codes[res.status_code] = codes.get(res.status_code, 0) + 1
                    if res.status_code == 303:
                        sent[(i, slug)] = choice
                next_at += 1 / per_client

        # Its output goes to files, not pipes: a pipe nobody reads while the votes run would fill
        # and stall a long ingest.
        ingest_out, ingest_err = open(work / "ingest.out", "w+"), open(work / "ingest.err", "w+")  # noqa: SIM115
        ingest = subprocess.Popen([sys.executable, "-m", "shipskip", "ingest", str(work / "inbox")], env=ingest_env,
                                  stdout=ingest_out, stderr=ingest_err, text=True)  # fmt: skip
        started = time.monotonic()
        ingest_s: list[float] = []

        def watch() -> None:
            ingest.wait()
            ingest_s.append(time.monotonic() - started)

        threading.Thread(target=watch, daemon=True).start()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        ingest.wait(timeout=1800)
        out, errs = (f.seek(0) or f.read() for f in (ingest_out, ingest_err))
    finally:
        web.terminate()
        web.wait(timeout=30)
        fake.kill()
        fake.wait()

    from shipskip.store import Store

    store = Store(db)
    rows = store.query("SELECT slug, vote, voter FROM votes")
    voter_of = {i: "web-" + c.cookies["shipskip_voter"].split(".")[0] for i, (c, _) in enumerate(clients)}
    stored = {(r["voter"], r["slug"]): r["vote"] for r in rows}
    duplicated = len(rows) - len(stored)
    expected = {(voter_of[i], slug): choice for (i, slug), choice in sent.items()}
    lost = sum(1 for k in expected if k not in stored)
    wrong = sum(1 for k, v in expected.items() if k in stored and stored[k] != v)
    extra = sum(1 for k in stored if k not in expected)
    n = len(latencies)
    latencies.sort()
    p = lambda q: latencies[min(n - 1, int(q * n))] * 1000  # noqa: E731
    reviewed = store.query("SELECT count(*) AS n FROM tools WHERE slug LIKE 'tool-%'")[0]["n"]
    print(f"votes sent: {n:,} in {wall:.1f} s ({n / wall:.1f}/s) from {args.clients} clients")
    print(f"answers: {dict(sorted(codes.items()))}; 5xx: {sum(v for k, v in codes.items() if k >= 500)}")
    print(f"latency: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    during.sort()
    if during:
        q = lambda f: during[min(len(during) - 1, int(f * len(during)))] * 1000  # noqa: E731
        print(f"  while the ingest ran ({len(during):,} votes): p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms")
    ran = f"{ingest_s[0]:.1f} s" if ingest_s else "past the window"
    print(f"  the ingest ran {ran} of the {wall:.1f} s window (its start-up included)")
    print(f"(client, tool) pairs voted: {len(sent):,}; stored votes: {len(rows):,}; lost: {lost}; "
          f"duplicated: {duplicated}; not sent: {extra}; last choice differs: {wrong}")  # fmt: skip
    print(
        f"ingest: exit {ingest.returncode}, {reviewed} of {args.ingest} new tools committed; {out.strip()[-200:]}"
    )
    if ingest.returncode:
        print(errs[-2000:])


if __name__ == "__main__":
    main()
