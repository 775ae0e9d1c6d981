"""Time a review with the embedded model: holistic and checklist scoring through shipskip, and
the same requests sent straight to llama.cpp.

For the checklist, every request shipskip sends (retries included) is recorded at the HTTP
boundary with when it was sent, then replayed straight to a running llama.cpp server one after
another in that order. The server answers one request at a time in arrival order, so the
replay gives it the same work, prompt cache included: the ratio is shipskip's own cost. It is
measured for one `review-tool` flow run (which starts the embedded server for its one card)
and for an ingest of a few sample cards (which starts it once for all of them).

Usage: .venv/bin/python bench/review_bench.py [--rounds N] [--replay-only] [--ingest CARD,CARD,...]
Prints seconds per review through shipskip (prompt rendering, client, validation, the Prefect
flow and DuckDB writes) for each scoring mode, the bare HTTP loop, and the ratios. The
checklist asks one Yes/No question per criterion (max_tokens 1) and then writes each take.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")


SEED = 20261126


def completion_tokens(content: bytes) -> int:
    return int((json.loads(content).get("usage") or {}).get("completion_tokens") or 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--card", default=str(ROOT / "data" / "tools" / "smollm3.yaml"))
    ap.add_argument("--ingest", default="smollm3.yaml,pagerduck.yaml,framecast.yaml",
                    help="sample cards (data/tools) an ingest reviews, for the ratio with the server started once")  # fmt: skip
    ap.add_argument("--replay-only", action="store_true", help="only the recorded-and-replayed ratios")
    args = ap.parse_args()

    from shipskip.orchestration import prefect_api

    # The flows run against the same temporary Prefect API, with the same settings, as
    # `shipskip review` and `shipskip ingest` give them.
    with prefect_api():
        bench(args)


def bench(args: argparse.Namespace) -> None:
    import httpx

    from shipskip.cards import load_card
    from shipskip.cli import flows_module  # the flows' package, from a checkout or a wheel
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

    review_tool = flows_module("review").review_tool

    direct: list[float] = []
    through: dict[str, list[float]] = {"holistic": [], "checklist": []}
    calls: dict[str, int] = {}
    if args.replay_only:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / "bench.duckdb")
            # Warm-up: the first flow run loads what Prefect loads once.
            review_tool(card_path=args.card, force=True)
    else:
        with (
            embedded_server(n_ctx=settings.embedded_ctx, threads=settings.embedded_threads) as base_url,
            httpx.Client(timeout=120) as http,
        ):
            for _ in range(args.rounds):
                t = time.perf_counter()
                for body in requests:
                    http.post(f"{base_url}/chat/completions", json=body).raise_for_status()
                direct.append(time.perf_counter() - t)

        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / "bench.duckdb")
            # Warm-up: the first flow run loads what Prefect loads once.
            review_tool(card_path=args.card, force=True)
            for mode in through:
                os.environ["SHIPSKIP_SCORING"] = mode
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    out = review_tool(card_path=args.card, force=True)
                    through[mode].append(time.perf_counter() - t)
                calls[mode] = sum(t.attempts for t in out.takes)

    # Record, at the HTTP boundary, every request shipskip sends (retries included) and when
    # it was sent. llama.cpp's server answers one request at a time, in the order they arrive,
    # so replaying them one after another in that order gives the server the same work, its
    # prompt cache included: the raw cost of the same review.
    import shutil

    review_new_tools = flows_module("scheduled").review_new_tools
    from shipskip.transport import DeadlineTransport

    plain = DeadlineTransport.handle_request
    recorded: list[tuple[float, bytes, float, int]] = []

    def recording(self: DeadlineTransport, request: httpx.Request) -> httpx.Response:
        # A take is sampled (temperature 0.4): with no seed the replay would write takes of
        # other lengths, and the ratio would compare different work. Every request gets the
        # same seed here, in the recording and so in its replay; it changes what is sampled,
        # not what it costs.
        sent, body = time.perf_counter(), json.loads(request.read())
        body["seed"] = SEED
        content = json.dumps(body).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        seeded = type(request)(request.method, request.url, headers=headers, content=content)
        response = plain(self, seeded)
        response.read()
        recorded.append((sent, content, time.perf_counter(), completion_tokens(response.content)))
        return response

    def record(run: Callable[[], object]) -> tuple[float, list[bytes]]:
        recorded.clear()
        DeadlineTransport.handle_request = recording  # type: ignore[method-assign]
        try:
            t = time.perf_counter()
            run()
            took = time.perf_counter() - t
        finally:
            DeadlineTransport.handle_request = plain  # type: ignore[method-assign]
        # Where shipskip's own time goes: before its first request (server start, flow, run
        # bookkeeping) and after its last answer (storing, the artifact, stopping the server).
        first, last = min(r[0] for r in recorded), max(r[2] for r in recorded)
        print(
            f"    recorded {took:.2f} s, {sum(r[3] for r in recorded)} tokens generated: first request "
            f"at {first - t:.2f} s, last answer {t + took - last:.2f} s before the end"
        )
        return took, [body for _, body, _, _ in sorted(recorded, key=lambda r: r[0])]

    def replay(bodies: list[bytes]) -> float:
        tokens = 0
        with (
            embedded_server(n_ctx=settings.embedded_ctx, threads=settings.embedded_threads) as base_url,
            httpx.Client(timeout=120) as http,
        ):
            t = time.perf_counter()
            for body in bodies:
                r = http.post(
                    f"{base_url}/chat/completions", content=body, headers={"content-type": "application/json"}
                )
                r.raise_for_status()
                tokens += completion_tokens(r.content)
            took = time.perf_counter() - t
        print(f"    replayed {took:.2f} s, {tokens} tokens generated")
        return took

    os.environ["SHIPSKIP_SCORING"] = "checklist"
    single: list[tuple[float, list[bytes]]] = []
    batch: list[tuple[float, list[bytes]]] = []
    single_raw: list[float] = []
    batch_raw: list[float] = []
    names = [n for n in args.ingest.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        for name in names:
            shutil.copy(ROOT / "data" / "tools" / name, inbox / name)
        # Each recording is replayed right after it is made: this VM's speed drifts by 20%
        # over minutes, so a replay long after its recording compares two machines.
        for i in range(args.rounds):
            os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / f"one-{i}.duckdb")
            single.append(record(lambda: review_tool(card_path=args.card, force=True)))
            single_raw.append(replay(single[-1][1]))
            if not names:
                continue
            os.environ["SHIPSKIP_DB_PATH"] = str(Path(tmp) / f"many-{i}.duckdb")
            batch.append(record(lambda: review_new_tools(source=str(inbox))))
            batch_raw.append(replay(batch[-1][1]))

    single_ratios = [took / raw for (took, _), raw in zip(single, single_raw, strict=True)]
    batch_ratios = [took / raw for (took, _), raw in zip(batch, batch_raw, strict=True)]
    for what, got, raws in (("one review", single, single_raw), ("ingest", batch, batch_raw)):
        for i, ((took, _), raw) in enumerate(zip(got, raws, strict=True)):
            print(f"  {what}, round {i + 1}: through shipskip {took:7.2f} s, raw {raw:7.2f} s")

    print(f"card: {card.slug}  rounds: {args.rounds}  cpus: {os.cpu_count()}")
    if not args.replay_only:
        report_direct(statistics.median(direct), through, calls)
    took1, n1 = statistics.median(t for t, _ in single), statistics.median(len(b) for _, b in single)
    print(
        f"checklist, one review-tool flow run (embedded server started for it): {took1:6.2f} s, "
        f"{n1:.0f} requests; {statistics.median(single_ratios):.3f}x the same requests sent straight "
        f"to llama.cpp in the order they were sent (per round: {', '.join(f'{r:.3f}' for r in single_ratios)})"
    )
    if not names:
        return
    tookn, nn = statistics.median(t for t, _ in batch), statistics.median(len(b) for _, b in batch)
    print(
        f"checklist, an ingest of {len(names)} cards (server started once): {tookn / len(names):6.2f} s a tool, "
        f"{nn:.0f} requests; {statistics.median(batch_ratios):.3f}x raw "
        f"(per round: {', '.join(f'{r:.3f}' for r in batch_ratios)})"
    )
    sys.stdout.flush()


def report_direct(d: float, through: dict[str, list[float]], calls: dict[str, int]) -> None:
    h, c = statistics.median(through["holistic"]), statistics.median(through["checklist"])
    print(f"direct to llama.cpp (5 holistic requests, server already up): {d:6.2f} s per review")
    print(
        f"holistic through shipskip ({calls['holistic']} calls):  {h:6.2f} s per review  ({h / d:.2f}x direct)"
    )
    print(
        f"checklist through shipskip ({calls['checklist']} calls): {c:6.2f} s per review  ({c / h:.2f}x holistic)"
    )


if __name__ == "__main__":
    main()
