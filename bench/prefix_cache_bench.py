"""How many prompt tokens llama.cpp's cache reuses across the five persona calls on one tool.

Usage: .venv/bin/python bench/prefix_cache_bench.py
"before": the persona's lens sits in the system prompt, ahead of the tool card, so each call
differs from the previous one almost at once. "after" (shipskip's layout): panel rules, then the
delimited card, then the persona, so consecutive calls on one tool share a long prefix.
The figures come from llama-cpp-python's own "N prefix-match hit, remaining M" log lines.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
HIT = re.compile(r"Llama.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


def main() -> None:
    import httpx

    from shipskip.cards import load_card
    from shipskip.embedded import EMBEDDED_MODEL, embedded_server
    from shipskip.models import reply_json_schema
    from shipskip.personas import load_prompts, render_messages, shared_prefix

    prompts = load_prompts(ROOT / "prompts")
    cards = [load_card(p) for p in sorted((ROOT / "data" / "tools").iterdir())]

    def layouts(card):
        prefix = shared_prefix(prompts, card)
        after, before = [], []
        for name in prompts.personas:
            system, user = (m["content"] for m in render_messages(prompts, name, card))
            after.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
            persona_part = user[len(prefix) :]
            before.append([{"role": "system", "content": system + "\n\n" + persona_part},
                           {"role": "user", "content": prefix}])  # fmt: skip
        return {"before": before, "after": after}

    results = {}
    for layout in ("before", "after"):
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "server.log"
            with embedded_server(log_path=log) as base_url, httpx.Client(timeout=120) as http:
                started = time.perf_counter()
                for card in cards:
                    for messages in layouts(card)[layout]:
                        http.post(f"{base_url}/chat/completions", json={
                            "model": EMBEDDED_MODEL, "messages": messages, "temperature": 0.0,
                            "max_tokens": 1, "response_format": {"type": "json_object",
                                                                 "schema": reply_json_schema(card.name)},
                        }).raise_for_status()  # fmt: skip
                elapsed = time.perf_counter() - started
            hits = [(int(a), int(b)) for a, b in HIT.findall(log.read_text(errors="replace"))]
        reused = sum(a for a, _ in hits)
        total = sum(a + b for a, b in hits)
        results[layout] = (reused, total, elapsed, len(hits))

    print(
        f"{len(cards)} tools x 5 personas, SmolLM2-135M on llama.cpp, max_tokens=1 (prompt processing only)"
    )
    for layout, (reused, total, elapsed, n) in results.items():
        print(
            f"{layout:>6}: {reused:6d} of {total:6d} prompt tokens reused from cache "
            f"({reused / total:5.1%}), {n} requests, {elapsed:5.2f} s"
        )
    b, a = results["before"], results["after"]
    print(
        f"tokens evaluated: before {b[1] - b[0]}, after {a[1] - a[0]} "
        f"({(b[1] - b[0]) / max(a[1] - a[0], 1):.2f}x fewer with the shared prefix)"
    )


if __name__ == "__main__":
    main()
