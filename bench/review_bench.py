"""Time a review with the embedded model: holistic and checklist scoring through shipskip, and
the same requests sent straight to llama.cpp.

For the checklist, the requests of one shipskip review are recorded at the HTTP boundary
(every body, retries included, grouped by the seat's thread) and replayed straight to the
same server with the same concurrency, one thread per seat: the ratio is shipskip's own cost.

Usage: .venv/bin/python bench/review_bench.py [--rounds N]
Prints seconds per review through shipskip (prompt rendering, client, validation, the Prefect
flow and DuckDB writes) for each scoring mode, the bare HTTP loop, and the ratios. The
checklist asks one Yes/No question per criterion (max_tokens 1) and then writes each take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--card", default=str(ROOT / "data" / "tools" / "smollm3.yaml"))
    args = ap.parse_args()

    import httpx

    from shipskip.cards import load_card
    from shipskip.embedded import EMBEDDED_MODEL, embedded_server
    from shipskip.models import reply_json_schema
    from shipskip.personas import load_prompts, render_messages
    from shipskip.settings import Settings

    card = load_card(Path(args.card))
    prompts = load_prompts(ROOT / "prompts")
    settings = Settings()
    requests = [
        {
            "model": EMBEDDED_MODEL,
            "messages": render_messages(prompts, p, card),
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "response_format": {"type": "json_object", "schema": reply_json_schema(card.name)},
        }
        for p in prompts.personas
    ]

    direct = []
    with embedded_server() as base_url, httpx.Client(timeout=120) as http:
        for _ in range(args.rounds):
            t = time.perf_counter()
            for body in requests:
                http.post(f"{base_url}/chat/completions", json=body).raise_for_status()
            direct.append(time.perf_counter() - t)

    from flows.review import review_tool

    through: dict[str, list[float]] = {"holistic": [], "checklist": []}
    calls: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / "bench.duckdb")
        review_tool(card_path=args.card, force=True)  # warm-up: Prefect's first flow run starts its server
        for mode in through:
            os.environ["SHIPSKIP_SCORING"] = mode
            for _ in range(args.rounds):
                t = time.perf_counter()
                out = review_tool(card_path=args.card, force=True)
                through[mode].append(time.perf_counter() - t)
            calls[mode] = sum(t.attempts for t in out.takes)

    # Record one checklist review's requests, then replay them raw, seat by seat in threads.
    import threading

    from shipskip.llm import DeadlineTransport

    recorded: dict[str, list[bytes]] = {}
    plain = DeadlineTransport.handle_request

    def recording(self: DeadlineTransport, request: httpx.Request) -> httpx.Response:
        recorded.setdefault(threading.current_thread().name, []).append(request.read())
        return plain(self, request)

    replayed, through_again = [], []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / "bench.duckdb")
        os.environ["SHIPSKIP_SCORING"] = "checklist"
        DeadlineTransport.handle_request = recording  # type: ignore[method-assign]
        try:
            review_tool(card_path=args.card, force=True)
        finally:
            DeadlineTransport.handle_request = plain  # type: ignore[method-assign]
        for _ in range(args.rounds):
            t = time.perf_counter()
            review_tool(card_path=args.card, force=True)
            through_again.append(time.perf_counter() - t)
    seats = list(recorded.values())
    with embedded_server() as base_url, httpx.Client(timeout=120) as http:

        def replay(bodies: list[bytes]) -> None:
            for body in bodies:
                http.post(
                    f"{base_url}/chat/completions", content=body, headers={"content-type": "application/json"}
                ).raise_for_status()

        for _ in range(args.rounds):
            t = time.perf_counter()
            workers = [threading.Thread(target=replay, args=(b,)) for b in seats]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            replayed.append(time.perf_counter() - t)

    d = statistics.median(direct)
    h, c = statistics.median(through["holistic"]), statistics.median(through["checklist"])
    print(f"card: {card.slug}  rounds: {args.rounds}  cpus: {os.cpu_count()}")
    print(f"direct to llama.cpp (5 holistic requests, server already up): {d:6.2f} s per review")
    print(
        f"holistic through shipskip ({calls['holistic']} calls):  {h:6.2f} s per review  ({h / d:.2f}x direct)"
    )
    print(
        f"checklist through shipskip ({calls['checklist']} calls): {c:6.2f} s per review  ({c / h:.2f}x holistic)"
    )
    r, c2 = statistics.median(replayed), statistics.median(through_again)
    print(
        f"checklist, the same {sum(map(len, seats))} requests replayed straight to llama.cpp in {len(seats)} "
        f"threads: {r:6.2f} s; through shipskip: {c2:6.2f} s  ({c2 / r:.2f}x raw)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
