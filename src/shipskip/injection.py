"""Spotting text in a tool card (or a reply) that tries to steer the panel. Pure functions."""

from __future__ import annotations

import re
import unicodedata

from .models import ToolCard

# Orders to whoever reads the text, which no description of a tool and no take needs.
_ORDERS = [
    r"ignore (all |any )?(the )?(previous|prior|above|earlier|your) (instructions|rules|prompts?)",
    r"disregard (all |any )?(the )?(previous|prior|above|your) (instructions|rules)",
    r"(reveal|print|show|repeat|output|tell me) (me )?(your|the) (system )?(prompt|instructions|rules)",
    r"\byou are now\b",
    r"</?\s*(system|instructions?|tool_card)\b",
]
# Phrases aimed at the reviewer rather than describing the tool. Matching is deliberately
# broad: a false alarm costs one extra model call, a miss lets a card buy its score. A take
# may well say "I give it a perfect score", so replies are held to the orders alone.
_PATTERNS = [
    *_ORDERS,
    r"(give|rate|score|award|assign)( (it|this( tool)?|us|me))? (a )?(score of |rating of )?"
    r"(100|a perfect|full marks|10/10)",
    r"\bscore (must|should|has to) be\b",
    r"\b(as|you are) an? (ai|language model|assistant)\b[^.]{0,40}\b(must|should|will)\b",
    r"\bverdict (must|should) be\b",
]
_SUSPICIOUS = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
_ORDERING = re.compile("|".join(f"(?:{p})" for p in _ORDERS), re.IGNORECASE)
# Where a sentence of the text as written ends.
_END = re.compile(r"[.!?\n]")

# Letters of other scripts that look like Latin ones (from Unicode's confusables table:
# Cyrillic, Greek, Armenian, Cherokee and IPA forms), each pair written look-alike then Latin,
# so that "Ignоre" with a Cyrillic о reads "Ignore". The patterns ignore case, so either case
# maps to whichever Latin letter it resembles. Full-width, mathematical and other compatibility
# forms are folded by NFKD before this table is read.
_LOOK_ALIKES = (
    "аa Аa вb Вb еe Еe іi Іi јj Јj кk Кk мm Мm нh Нh оo Оo рp Рp сc Сc тt Тt уy Уy хx Хx"
    " ѕs Ѕs ԁd Ԁd ԛq Ԛq ԝw Ԝw һh Һh ӏl Ӏl үy Үy ɡg ʏy ɑa ɩi ıi ʀr"
    " αa Αa βb Βb γy εe Εe Ζz ηn Ηh ιi Ιi ϳj κk Κk μu Μm νv Νn οo Οo ρp Ρp τt Τt υu Υy χx Χx ωw ϲc Ϲc"
    " օo ոn սu ցg հh Աu Սu Օo ᎪA ᎬE ᎻH ᏆT ᎫJ ᏦK ᎷM ᏃZ ᏴB"
)
_CONFUSABLES = {ord(pair[0]): pair[1] for pair in _LOOK_ALIKES.split() if pair[0] != pair[1]}


def folded(text: str) -> tuple[str, list[int]]:
    """Text as the scan reads it, and where each of its characters came from in `text`.

    Each character is decomposed (NFKD: full-width and styled letters become plain, accents come
    apart), accents and invisible characters are dropped, look-alike letters become Latin and
    every run of whitespace or control characters becomes one space: "Ignore  previous\tinstr-
    uctions", "Ign\u200bore" and "Ignоre" (Cyrillic о) all read "Ignore previous instructions".
    """
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKD", ch):
            kind = unicodedata.category(c)
            if kind in ("Mn", "Me", "Cf", "Cs"):
                continue
            if c.isspace() or kind == "Cc":
                if not out or out[-1] == " ":
                    continue
                c = " "
            out.append(_CONFUSABLES.get(ord(c), c))
            where.append(i)
    return "".join(out), where


def gives_orders(text: str) -> bool:
    """Whether a reply, once folded, passes orders on to its reader ("ignore previous
    instructions", "reveal your prompt", a <system> tag)."""
    return bool(_ORDERING.search(folded(text)[0]))


def suspicious_sentences(text: str) -> list[str]:
    """Whole sentences of `text` as written holding a steering phrase, so removing them leaves
    readable text. The phrase is found in the folded text; its sentence runs from the sentence
    end before it to the one after it, across line breaks inside the phrase itself."""
    flat, where = folded(text)
    spans: list[tuple[int, int]] = []
    for m in _SUSPICIOUS.finditer(flat):
        first, last = where[m.start()], where[m.end() - 1]
        start = max((e.end() for e in _END.finditer(text, 0, first)), default=0)
        end = _END.search(text, last + 1)
        stop = end.end() if end else len(text)
        if spans and start < spans[-1][1]:  # a second phrase in the same sentence
            start = spans.pop()[0]
        spans.append((start, stop))
    return [text[a:b] for a, b in spans if text[a:b].strip()]


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
    score: int | None, clean_score: int | None, verdict: str | None, clean_verdict: str | None, delta: int
) -> bool:
    """Whether removing the suspicious text moved the score by `delta` or more, or flipped the
    verdict (SHIPSKIP_FLAG_DELTA)."""
    if score is None or clean_score is None:
        return verdict != clean_verdict
    return abs(score - clean_score) >= delta or verdict != clean_verdict
