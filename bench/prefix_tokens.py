"""How long the prompt prefix the checklist's questions share is, in tokens, against a
provider's prompt-caching minimum (OpenAI: 1024 tokens, then in steps of 128).

For each card, every checklist question of every seat is rendered as shipskip sends it
(`personas.question_messages`): system rules, then the user message with the delimited card,
the seat's lens and the question last. Printed per card:
- the prefix all of a card's questions share (rules and card: what every seat's questions have
  in common), and the prefix one seat's questions share (that plus the seat's lens: what a
  provider's cache serves from the second question of a seat on);
- the whole question request.

Tokens are counted two ways, both stated: SmolLM2-135M's own tokenizer (the packaged GGUF's
vocabulary through llama-cpp-python, vocab only, no weights loaded) over the message texts plus
4 tokens a message for the chat template; and an estimate for OpenAI's tokenizers of one token
per 4 characters of English (their rule of thumb; tiktoken is not a dependency).

Usage: .venv/bin/python bench/prefix_tokens.py [--cards data/tools] [--min 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PER_MESSAGE = 4  # role markers and separators a chat template adds around each message


def common_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", type=Path, default=ROOT / "data" / "tools")
    ap.add_argument("--min", type=int, default=1024, help="the provider's caching minimum, in tokens")
    args = ap.parse_args()

    import llama_cpp

    from shipskip.cards import load_card
    from shipskip.embedded import model_path
    from shipskip.personas import load_prompts, question_messages

    vocab = llama_cpp.Llama(model_path=str(model_path()), vocab_only=True, verbose=False)

    def smol(text: str, messages: int) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False)) + PER_MESSAGE * messages

    def openai_estimate(text: str, messages: int) -> int:
        return round(len(text) / 4) + PER_MESSAGE * messages

    prompts = load_prompts(ROOT / "prompts")
    rows = []
    for path in sorted(args.cards.iterdir()):
        card = load_card(path)
        flat_all, seat_prefixes, whole = [], [], []
        for persona, p in prompts.personas.items():
            flats = []
            for item in p.checklist.items:
                if not item.question:
                    continue
                system, user = (
                    m["content"] for m in question_messages(prompts, persona, card, item.question)
                )
                flats.append(system + "\n" + user)
            flat_all += flats
            seat_prefixes.append(common_prefix(flats))
            whole += flats
        card_prefix = common_prefix(flat_all)
        seat_prefix = min(seat_prefixes, key=len)  # the shortest seat's: the least any seat shares
        rows.append({
            "card": path.name,
            "card_prefix": (smol(card_prefix, 2), openai_estimate(card_prefix, 2), len(card_prefix)),
            "seat_prefix": (smol(seat_prefix, 2), openai_estimate(seat_prefix, 2), len(seat_prefix)),
            "request": (max(smol(w, 2) for w in whole), max(openai_estimate(w, 2) for w in whole)),
        })  # fmt: skip
    print(f"{len(rows)} cards from {args.cards}; caching minimum {args.min} tokens")
    print(f"{'card':24} {'rules+card':>22} {'rules+card+lens':>22} {'whole request':>16}")
    print(f"{'':24} {'smol / openai~ (chars)':>22} {'smol / openai~ (chars)':>22} {'smol / openai~':>16}")
    for r in rows:
        cp, sp, rq = r["card_prefix"], r["seat_prefix"], r["request"]
        print(f"{r['card']:24} {cp[0]:>5} / {cp[1]:>5} ({cp[2]:>5}) {sp[0]:>5} / {sp[1]:>5} ({sp[2]:>5}) "
              f"{rq[0]:>6} / {rq[1]:>6}")  # fmt: skip
    for key, label in (("card_prefix", "rules+card"), ("seat_prefix", "rules+card+lens")):
        smols = [r[key][0] for r in rows]
        oai = [r[key][1] for r in rows]
        print(f"median {label}: {statistics.median(smols):.0f} SmolLM2 tokens, ~{statistics.median(oai):.0f} "
              f"OpenAI tokens; {sum(o >= args.min for o in oai)} of {len(rows)} cards reach {args.min}")  # fmt: skip


if __name__ == "__main__":
    main()
