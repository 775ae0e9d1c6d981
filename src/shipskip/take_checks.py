"""Checks on a take's text. Pure functions.

`take_problem`: a take that is too short, repeats its prompt, gives orders or argues against
its own verdict is refused and asked again.

`unsupported`: a take may state only what its card says. It is refused (and asked again) when
it holds a number, a name, a placeholder slot or a
claim of rank or authorship that the card does not hold; after the last attempt the take is
composed from the persona's checklist (`compose_take`), which states nothing the card and the
checklist do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .injection import gives_orders
from .models import Criterion, ToolCard, by_effect
from .personas import Persona
from .quality import grounding_facts, is_grounded
from .untrusted import clean_text, normalise_untrusted

Kind = Literal["placeholder", "number", "name", "claim", "ungrounded"]


@dataclass(frozen=True)
class Unsupported:
    """Why a take states what its card does not: the kind, and the words that do it."""

    kind: Kind
    found: str

    @property
    def message(self) -> str:
        # Fed back to the model as the reason its take was refused, so it says what to do.
        what = {
            "placeholder": f"it leaves a slot unfilled ({self.found})",
            "number": f"it states a number the card does not give ({self.found})",
            "name": f"it names {self.found}, which the card does not mention",
            "claim": f"it claims something the card does not state ({self.found})",
            "ungrounded": "it names no fact from the card",
        }[self.kind]
        return f"the take states what its card does not say: {what}; use only facts from the card"


# Number words a take could invent a size, price or count with. "one" is left out: it is
# mostly a pronoun ("the one thing", "one of").
_UNITS = """zero two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen""".split()  # noqa: SIM905
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
_NUMBER_WORDS = {"zero": "0"} | {w: str(v) for v, w in enumerate(_UNITS[1:], start=2)}
_NUMBER_WORDS |= {w: str(20 + 10 * i) for i, w in enumerate(_TENS)}
_MAGNITUDES = {"hundred": "hundred", "thousand": "thousand", "million": "million",
               "billion": "billion", "trillion": "trillion", "dozen": "12"}  # fmt: skip
_SUFFIX = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion", "t": "trillion"}
# A numeral standing on its own (not the 3 of "SmolLM3"), with an optional size suffix.
_NUMERAL = re.compile(r"(?<![^\W_])(\d+(?:,\d{3})*(?:\.\d+)?)(?:\s?(mn|bn|[kmbt])\b)?", re.IGNORECASE)
_WORDS = re.compile(r"(?<![^\W_])[^\W\d_][^\W_]*")
_NUMBER_WORD = re.compile(
    r"\b(" + "|".join(sorted([*_NUMBER_WORDS, *_MAGNITUDES], key=len, reverse=True)) + r")s?\b",
    re.IGNORECASE,
)


def _quantities(text: str) -> list[tuple[str, str]]:
    """(canonical value, as written) for every numeral, size suffix and number word in `text`."""
    out = []
    for m in _NUMERAL.finditer(text):
        value = float(m.group(1).replace(",", ""))
        out.append((f"{value:g}", m.group(0).strip()))
        if m.group(2):
            out.append((_SUFFIX[m.group(2).lower()], m.group(0).strip()))
    for m in _NUMBER_WORD.finditer(text):
        word = m.group(1).lower()
        out.append((_NUMBER_WORDS.get(word) or _MAGNITUDES[word], m.group(0)))
    return out


def _score_spans(score: int | None) -> re.Pattern[str] | None:
    """The take's own score stated as a score ("82/100", "I give it 82", "a score of 82")."""
    if score is None:
        return None
    s = str(score)
    out_of = r"(?:\s*(?:/|out of|of)\s*100\b|\s*(?:points|pts)\b)"
    return re.compile(
        rf"\b(?:score[sd]?|scoring|rat(?:e|ed|ing)|grade[sd]?|give|gave|giving)\s+"
        rf"(?:(?:it|this|of|a|an|at|as|me|to|just|only|them)\s+){{0,3}}{s}\b{out_of}?"
        rf"|\b{s}{out_of}",
        re.IGNORECASE,
    )


# Capitalised words that are no product or company name: acronyms of the trade, the panel's
# own words and the calendar. Anything else capitalised mid-sentence must be on the card.
_COMMON = frozenset(
    """i ai api apis sdk sdks cli clis llm llms gpu gpus cpu cpus ui ux os ide ides ml url urls
    json yaml html css sql http https rest saas ok faq pdf internet english ship skip yes no
    builder skeptic futurist creator founder panel
    monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december""".split()  # noqa: SIM905
)
# What may stand between a sentence break and its first word: a sentence's first word is
# capitalised whatever it is.
_OPENERS = "\"'“”‘’([{*_-–— \t"
_BREAKS = ".!?:;\n"

_PLACEHOLDERS = re.compile(
    r"\[[^\]\n]{0,60}\]|\{[^}\n]{0,60}\}|<[^>\n]{0,60}>|\b[a-z]+(?:_[a-z]+)+\b|_{2,}"
    r"|\bfill(?:ed)?[- ]in\b|\binsert\b[^.!?]{0,40}?\bhere\b"
    r"|\b(?:name|product|tool|company|details?|explanation|reason|text|description|link) here\b"
    r"|\bx{3,}\b|\bxyz\b|\blorem ipsum\b|\bplaceholder\b|\btbd\b|\btodo\b",
    re.IGNORECASE,
)
# Claims of rank, size or authorship that only the card could make. The phrase is allowed
# when its key word is on the card ("the largest ..." on a card that says "largest").
_CLAIMS = re.compile(
    r"\b(?:one of )?the (?:world'?s )?(?P<sup>largest|biggest|fastest|smallest|most (?:popular|"
    r"powerful|advanced|capable|used|widely used)|leading|first|best)\b[^.!?;]{0,40}?"
    r"\b(?:ever|in the world|on the market|in history|of all time|in its class|to date)\b"
    r"|\b(?:world|industry)'?s (?P<sup2>first|largest|biggest|fastest|best|leading|most \w+)\b"
    r"|\b(?P<sup3>industry[- ]leading|market[- ]leading|best[- ]in[- ]class|state[- ]of[- ]the[- ]art"
    r"|number one|record[- ]breaking)\b"
    r"|\bever (?:been )?(?:built|made|created|released|trained)\b"
    r"|\b(?:built|made|created|developed|designed|written|launched) by (?:me|us|my team|our team)\b"
    r"|\b(?:me and my team|my team and i|our team)\b"
    r"|\b(?:i|we) (?:have |had )?(?:built|created|developed|designed|launched) (?:it|this)\b",
    re.IGNORECASE,
)


def _card_text(card: ToolCard, labels: Iterable[str]) -> str:
    """Everything the take writer was shown as fact: the card's fields and the criteria labels."""
    return normalise_untrusted(
        "\n".join([card.name, card.tagline, card.category, card.pricing, card.description, *labels])
    )


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    return i < 0 or text[i] in _BREAKS


def _names(text: str, vocabulary: set[str]) -> list[str]:
    """Capitalised words that are not on the card: mid-sentence, or at a sentence's start when
    they could only be a name (an acronym, inner capitals as in "QuillDB", a digit)."""
    out = []
    for m in _WORDS.finditer(text):
        word = m.group(0)
        if word == word.lower() or word.lower() in vocabulary or word.lower() in _COMMON:
            continue
        name_shaped = any(ch.isupper() or ch.isdigit() for ch in word[1:])
        if name_shaped or not _sentence_initial(text, m.start()):
            out.append(word)
    return out


def unsupported(
    text: str, card: ToolCard, score: int | None = None, labels: Sequence[str] = ()
) -> Unsupported | None:
    """What in `text` the card does not hold, or None. `labels`: the criteria the take writer
    was shown, our own words. The take's own score, stated as a score, is allowed."""
    t = normalise_untrusted(text)
    source = _card_text(card, labels)
    lowered = source.lower()
    for m in _PLACEHOLDERS.finditer(t):
        if m.group(0).lower() not in lowered:
            return Unsupported("placeholder", clean_text(m.group(0))[:60])
    spans = _score_spans(score)
    scan = spans.sub(" ", t) if spans else t
    known = {value for value, _ in _quantities(source)}
    for value, written in _quantities(scan):
        if value not in known:
            return Unsupported("number", clean_text(written)[:60])
    vocabulary = {w.lower() for w in _WORDS.findall(source)}
    names = _names(t, vocabulary)
    if names:
        return Unsupported("name", clean_text(", ".join(dict.fromkeys(names)))[:60])
    for m in _CLAIMS.finditer(t):
        key = m.group("sup") or m.group("sup2") or m.group("sup3")
        if not key or key.lower() not in lowered:
            return Unsupported("claim", clean_text(m.group(0))[:60])
    if grounding_facts(card) and not is_grounded(text, card):
        return Unsupported("ungrounded", "")
    return None


def _in_its_words(card: ToolCard, limit: int = 160) -> str:
    """The card's own words for what the tool is: its tagline, or where that names no fact of
    the description, the description's first sentence (cut at a word, within `limit`)."""
    tagline = clean_text(card.tagline)
    if is_grounded(tagline, card) or not grounding_facts(card):
        return tagline
    first = re.split(r"(?<=[.!?])\s", clean_text(card.description), maxsplit=1)[0].rstrip(".")
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + "…"


def compose_take(
    card: ToolCard, verdict: str, score: int, criteria: Sequence[Criterion], top: int = 2
) -> str:
    """A take in plain sentences from the persona's own checklist: the card's tagline, then the
    criteria behind the score (the `top` that weighed most in each group), then the score.
    Everything in it is the card's words or ours, so it states nothing the card does not."""
    favour, against, lacking = (
        [c.label for c in sorted(group, key=lambda c: -abs(c.weight))[:top]]
        for group in by_effect(list(criteria))
    )
    parts = [f'I {verdict} {clean_text(card.name)}, which its card describes as "{_in_its_words(card)}".']
    if favour:
        parts.append(f"For it: {', '.join(favour)}.")
    if against:
        parts.append(f"Against it: {', '.join(against)}.")
    if lacking:
        parts.append(f"It lacks: {', '.join(lacking)}.")
    if not (favour or against or lacking):
        parts.append("No single item of my checklist decided it.")
    parts.append(f"My checklist gives it {score}/100.")
    return " ".join(parts)


# Phrases that argue for the opposite verdict. A take that uses them contradicts its own
# verdict; they are matched on normalised text, so odd spacing or case does not hide them.
_ARGUES_SKIP = re.compile(
    r"\b(i(?:'d| would)? skip|skip it|i(?:'d| would)? pass on|not worth (?:it|adopting|using|the)|"
    r"i (?:can ?not|can't|won't|would not|wouldn't) (?:recommend|ship|use|adopt)|avoid it|stay away)\b"
)
_ARGUES_SHIP = re.compile(
    r"\b(i(?:'d| would)? ship|ship it|must[- ]have|highly recommend|i recommend|worth adopting|"
    r"i(?:'d| would)? (?:adopt|use) it (?:now|today))\b"
)
# Lines of our own prompt that a take must never repeat, and the take template left unfilled
# ("because it ..."). Only phrases of ours: "the rules" alone is plain English (a take on a
# legal tool used it and was refused), so it is "these rules", as the prompt says it.
_ECHO = re.compile(
    r"(you are the \w+|tool_card|answer yes or no|answer as one json|json object|first person|"
    r"your checklist|your verdict is|do not repeat these|these rules|following the rules|"
    r"review panel|\byes: |\bno: |because it \.\.\.|fill in the blank)"
)
_LOWER_WORD = re.compile(r"[a-z0-9']+")


def normalise(text: str) -> str:
    """As the injection scan reads text (NFKC, zero-width and bidi out), lower case, spaces folded."""
    return " ".join(normalise_untrusted(text).lower().split())


# Where a run of the prompt's words ends: a sentence or clause break (or a line break, where the
# source is not normalised). A list of criteria ("runs on your own machine; drops into existing
# work") is short phrases that a take is meant to argue from; a run of words that crosses from
# one to the next is no echo.
_CLAUSE_BREAK = re.compile(r"[.;:!?](?=\s|$)|\n")


def _shared_run(text: str, source: str, n: int = 8) -> bool:
    """Whether `text` repeats `n` words in a row from one sentence or clause of `source`."""
    words = _LOWER_WORD.findall(text)
    grams: set[tuple[str, ...]] = set()
    for part in _CLAUSE_BREAK.split(source):
        src = _LOWER_WORD.findall(part)
        grams.update(tuple(src[i : i + n]) for i in range(len(src) - n + 1))
    return any(tuple(words[i : i + n]) in grams for i in range(len(words) - n + 1))


def take_problem(
    text: str, verdict: str, persona: Persona, prompt_text: str, opening: str = ""
) -> str | None:
    """Why a take cannot stand, or None. `prompt_text` is the instruction part of its prompt;
    `opening` the words the take was made to start with, which the prompt itself shows and so
    are no echo (with a name of four words or more they alone would be eight in a row)."""
    t = normalise(text)
    if len(t) < 40:
        return "the take is too short: write 2 or 3 sentences"
    lead = normalise(opening)
    body = t[len(lead) :] if lead and t.startswith(lead) else t
    if (
        _ECHO.search(t)
        or _shared_run(body, normalise(persona.role))
        or _shared_run(body, normalise(prompt_text))
    ):
        return "the take repeats the instructions instead of judging the tool"
    if gives_orders(text):
        # A reply that passes on a card's instructions ("ignore previous instructions") would
        # publish them: asked again, like any take our checks refuse.
        return "the take gives instructions instead of judging the tool"
    if verdict == "ship" and _ARGUES_SKIP.search(t):
        return "the take argues for skipping, but the verdict is ship"
    if verdict == "skip" and _ARGUES_SHIP.search(t):
        return "the take argues for shipping, but the verdict is skip"
    return None
