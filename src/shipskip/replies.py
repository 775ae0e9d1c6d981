"""Reading a provider's reply: the holistic JSON reply (its score weighed by log-probabilities),
a take, and a Yes/No answer as P(yes). Pure functions over the SDK's choice objects."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from .errors import InvalidOutput, RejectedText
from .models import REPLY_ADAPTER, SHIP_THRESHOLD, AbstainReply, ShipReply, SkipReply

Reply = ShipReply | SkipReply | AbstainReply


_YES = frozenset({"yes", "y", "true"})


_NO = frozenset({"no", "n", "false"})


def _word(token: str) -> str:
    return token.strip().strip(".,!:;\"'*").lower()


_SCORE_KEY = re.compile(r'"score"\s*:\s*$')


def expected_score(choice: Any) -> float | None:
    """The score's leading digit as an expectation over its top alternatives, the rest as sampled.

    Reads the tokens of the reply in order; at the first digit after `"score":`, every digit
    among the top log-probabilities is weighed by its probability. None without log-probabilities.
    """
    lp = getattr(choice, "logprobs", None)
    tokens = lp.content if lp and lp.content else None
    if not tokens:
        return None
    text = ""
    for k, tok in enumerate(tokens):
        if _SCORE_KEY.search(text) and tok.token.strip().isdigit():
            digits = tok.token.strip()
            rest = ""
            for nxt in tokens[k + 1 :]:
                if not nxt.token.isdigit():
                    break
                rest += nxt.token
            width = len(digits) + len(rest)
            alts = [(a.token.strip(), math.exp(a.logprob)) for a in tok.top_logprobs or []]
            alts = [(d, p) for d, p in alts if d.isdigit() and len(d) == len(digits)]
            if width > 3 or not alts:
                return None
            total = sum(p for _, p in alts)
            scale = 10 ** len(rest)
            return sum(int(d) * scale * p for d, p in alts) / total + (int(rest) if rest else 0)
        text += tok.token
    return None


def parse_yes_no(choice: Any) -> tuple[float, str]:
    """(P(yes), source) from one choice; P(yes) is renormalised over the yes and no tokens."""
    content = getattr(choice, "logprobs", None)
    first = content.content[0] if content and content.content else None
    if first is not None and first.top_logprobs:
        p_yes = sum(math.exp(t.logprob) for t in first.top_logprobs if _word(t.token) in _YES)
        p_no = sum(math.exp(t.logprob) for t in first.top_logprobs if _word(t.token) in _NO)
        if p_yes + p_no > 0:
            return round(p_yes / (p_yes + p_no), 4), "logprobs"
    text = (choice.message.content or "").strip()
    word = _word(text.split()[0]) if text.split() else ""
    if word in _YES:
        return 1.0, "sampled"
    if word in _NO:
        return 0.0, "sampled"
    raise InvalidOutput(f"expected Yes or No, got {text[:40]!r}", text)


def _json_content(choice: Any) -> tuple[str, Any]:
    """The reply's text and the JSON it holds; invalid output where it is not JSON."""
    content = (choice.message.content or "").strip()
    try:
        return content, json.loads(content)
    except json.JSONDecodeError as exc:
        cut = " (cut off at max_tokens)" if choice.finish_reason == "length" else ""
        raise InvalidOutput(f"not valid JSON{cut}: {exc.msg}", content) from exc


def parse_reply(choice: Any) -> Reply:
    """The holistic reply, with its score replaced by the probability-weighted one (G-Eval)
    where the reply carries log-probabilities, kept inside its verdict's range."""
    if not (choice.message.content or "").strip():
        raise InvalidOutput("the reply was empty", "")
    content, data = _json_content(choice)
    try:
        reply = REPLY_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'reply'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise InvalidOutput(f"wrong shape: {problems}", content) from exc
    if not isinstance(reply, AbstainReply):
        expected = expected_score(choice)
        if expected is not None:
            low, high = (SHIP_THRESHOLD, 100) if reply.verdict == "ship" else (0, SHIP_THRESHOLD - 1)
            reply = reply.model_copy(update={"score": max(low, min(high, round(expected)))})
    return reply


def take_parser(check: Callable[[str], str | None]) -> Callable[[Any], str]:
    """Reads a take reply ({"take": ...}); `check` names what is wrong with the take's text,
    which is then refused (RejectedText) and asked again."""

    def parse(choice: Any) -> str:
        content, data = _json_content(choice)
        text = data.get("take") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise InvalidOutput('wrong shape: expected {"take": "..."}', content)
        problem = check(text)
        if problem:
            raise RejectedText(problem, content)
        return text

    return parse


def response_format(mode: str, schema: dict, *, strict: bool = False) -> dict:
    """The response_format parameter for a JSON reply of `schema`, as the provider's mode takes it."""
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    spec = {"name": "take", "schema": schema} | ({"strict": True} if strict else {})
    return {"type": "json_schema", "json_schema": spec}
