"""Spotting text in a tool card that tries to steer the panel. Pure functions."""

from __future__ import annotations

import re

from .models import ToolCard

# Phrases aimed at the reviewer rather than describing the tool. Matching is deliberately
# broad: a false alarm costs one extra model call, a miss lets a card buy its score.
_PATTERNS = [
    r"ignore (all |any )?(the )?(previous|prior|above|earlier|your) (instructions|rules|prompts?)",
    r"disregard (all |any )?(the )?(previous|prior|above|your) (instructions|rules)",
    r"(give|rate|score|award|assign)( (it|this( tool)?|us|me))? (a )?(score of |rating of )?"
    r"(100|a perfect|full marks|10/10)",
    r"\bscore (must|should|has to) be\b",
    r"(reveal|print|show|repeat|output|tell me) (me )?(your|the) (system )?(prompt|instructions|rules)",
    r"\byou are now\b",
    r"\b(as|you are) an? (ai|language model|assistant)\b[^.]{0,40}\b(must|should|will)\b",
    r"\bverdict (must|should) be\b",
    r"</?\s*(system|instructions?|tool_card)\b",
]
_SUSPICIOUS = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]*[.!?\n]?")

# How far a score may move when the suspicious text is removed before the take is flagged.
FLAG_DELTA = 15


def suspicious_sentences(text: str) -> list[str]:
    """Whole sentences holding a steering phrase, so removing them leaves readable text."""
    return [
        m.group(0) for m in _SENTENCE.finditer(text) if m.group(0).strip() and _SUSPICIOUS.search(m.group(0))
    ]


def without_suspicious(card: ToolCard) -> ToolCard | None:
    """The card with steering sentences removed, or None when there are none."""
    fields = {}
    for name in ("name", "tagline", "category", "pricing", "description"):
        value = getattr(card, name)
        spans = suspicious_sentences(value)
        for span in spans:
            value = value.replace(span, " ")
        if spans:
            fields[name] = " ".join(value.split()) or "(removed)"
    if not fields:
        return None
    if len(fields.get("description", card.description)) < 20:
        fields["description"] = "(The description held only instructions to the panel, now removed.)"
    return card.model_copy(update=fields)


def score_jumped(
    score: int | None, clean_score: int | None, verdict: str | None, clean_verdict: str | None
) -> bool:
    if score is None or clean_score is None:
        return verdict != clean_verdict
    return abs(score - clean_score) >= FLAG_DELTA or verdict != clean_verdict
