"""Pydantic models: tool cards, takes, the reply schema the LLM must fill, and the panel verdict.
The text normalising a card's fields go through is in `untrusted`."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

# Re-exported: card and model text was normalised here before `untrusted` held it, and many
# modules still import these names from here.
from .untrusted import card_text as card_text
from .untrusted import clean_text as clean_text
from .untrusted import is_web_address as is_web_address
from .untrusted import load_yaml as load_yaml
from .untrusted import normalise_untrusted as normalise_untrusted

# The stated rule tying score to verdict: a take ships at 60 or above, and skips below.
SHIP_THRESHOLD = 60


def verdict_for(score: int) -> Literal["ship", "skip"]:
    """A take's verdict: ship at SHIP_THRESHOLD and above. The one place a score becomes a verdict."""
    return "ship" if score >= SHIP_THRESHOLD else "skip"


MAX_DESCRIPTION_CHARS = 20_000
MAX_TAKE_CHARS = 400
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

# Sites file the same product under drifting names; analysts want one.
CATEGORY_ALIASES: dict[str, str] = {
    "ai models": "Models",
    "open source models": "Models",
    "open-source models": "Models",
    "llms": "Models",
    "language models": "Models",
    "models": "Models",
    "dev tools": "Developer Tools",
    "developer tools": "Developer Tools",
    "devtools": "Developer Tools",
    "coding": "Developer Tools",
    "coding agents": "Developer Tools",
    "design": "Design",
    "design tools": "Design",
    "productivity": "Productivity",
    "writing": "Writing",
    "video": "Video",
    "audio": "Audio",
    "agents": "Agents",
    "ai agents": "Agents",
    "data": "Data",
    "infrastructure": "Infrastructure",
    "infra": "Infrastructure",
}


def normalise_category(raw: str) -> str:
    key = " ".join(raw.strip().split()).lower()
    return CATEGORY_ALIASES.get(key, " ".join(w[:1].upper() + w[1:] for w in key.split()))


def _visible(text: str, raw: str, field: str | None) -> str:
    """A required field that held text but none of it visible is refused as such."""
    if not text and raw and field not in ("source", "url"):
        raise ValueError("holds no visible text (only invisible, control or space characters)")
    return text


class ToolCard(BaseModel):
    """A newly launched tool as the panel reads it. Every text field is untrusted."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=120)]
    slug: Annotated[str, Field(min_length=1, max_length=64)]
    tagline: Annotated[str, Field(min_length=1, max_length=200)]
    category: Annotated[str, Field(min_length=1, max_length=60)]
    pricing: Annotated[str, Field(min_length=1, max_length=120)]
    entry_tier: Literal["free", "paid"]
    description: Annotated[str, Field(min_length=20, max_length=MAX_DESCRIPTION_CHARS)]
    source: Annotated[str, Field(max_length=500)] = ""
    url: Annotated[str, Field(max_length=500)] = ""
    launched: date | None = None

    @field_validator("slug")
    @classmethod
    def _slug_is_safe(cls, v: str) -> str:
        # Slugs name output files, so they must never carry a path.
        if not SLUG_RE.fullmatch(v):
            raise ValueError("must be lowercase letters, digits and inner hyphens (no '/', '..')")
        return v

    @field_validator("name", "tagline", "category", "pricing", "source", "url", mode="before")
    @classmethod
    def _one_line(cls, v: object, info: ValidationInfo) -> object:
        # Normalised before the length checks run, so a name of only invisible characters is
        # empty rather than one character long, and what was checked is what is stored.
        return _visible(card_text(v), v, info.field_name) if isinstance(v, str) else v

    @field_validator("description", mode="before")
    @classmethod
    def _description_text(cls, v: object) -> object:
        if isinstance(v, str) and len(v := card_text(v, multiline=True)) < 20:
            raise ValueError("must hold at least 20 characters of text")
        return v

    @field_validator("url")
    @classmethod
    def _web_address(cls, v: str) -> str:
        # Pages link to it: a javascript:, data: or file: address must never become a link.
        if v and not is_web_address(v):
            raise ValueError("must be an http:// or https:// address")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        return normalise_category(v)

    @field_validator("entry_tier", mode="before")
    @classmethod
    def _tier(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    def content_hash(self) -> str:
        """What the panel reads; a change here means the tool gets reviewed again."""
        payload = {
            k: getattr(self, k)
            for k in ("name", "tagline", "category", "pricing", "entry_tier", "description")
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# The reply the LLM must produce. The verdict picks the branch and the branch bounds the
# score, so constrained decoding cannot emit a score that disagrees with its verdict.
class ShipReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["ship"]
    take: Annotated[str, Field(min_length=40, max_length=MAX_TAKE_CHARS)]
    score: Annotated[int, Field(ge=SHIP_THRESHOLD, le=100)]


class SkipReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["skip"]
    take: Annotated[str, Field(min_length=40, max_length=MAX_TAKE_CHARS)]
    score: Annotated[int, Field(ge=0, le=SHIP_THRESHOLD - 1)]


class AbstainReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["abstain"]
    reason: Annotated[str, Field(min_length=3, max_length=300)]

    @field_validator("reason")
    @classmethod
    def _says_something(cls, v: str) -> str:
        # "...", "10.2" or a lone symbol is not a reason a reader can use.
        if len(re.findall(r"[^\W\d_]{2,}", v)) < 2:
            raise ValueError("must give the reason in words")
        return clean_text(v)


Reply = Annotated[ShipReply | SkipReply | AbstainReply, Field(discriminator="verdict")]
REPLY_ADAPTER: TypeAdapter[ShipReply | SkipReply | AbstainReply] = TypeAdapter(Reply)


# Characters a name may carry into a grammar pattern; anything else (quotes, backslashes,
# brackets, non-ASCII) and the pattern is left out rather than risk an invalid grammar.
_PATTERN_SAFE = re.compile(r"^[A-Za-z0-9 .,:;!?'&()+*/@#%=_-]{1,80}$")


def take_body(low: int, high: int) -> str:
    """The free part of a take: printable characters only (no quote, backslash or control
    character, so no newline can break the JSON string)."""
    return f'[^"\\\\\\x00-\\x1f]{{{max(0, low)},{max(low, high)}}}$'


def pattern_literal(text: str) -> str | None:
    """`text` as a regular expression matching it literally, in the subset every grammar
    converter reads: letters, digits and spaces as themselves, each other character alone in a
    class ([.] rather than \\. whose escape llama.cpp's grammar parser rejects). None when the
    text holds a character that cannot be written so."""
    if not _PATTERN_SAFE.match(text):
        return None
    return "".join(ch if ch.isalnum() or ch == " " else ("[-]" if ch == "-" else f"[{ch}]") for ch in text)


@functools.cache
def _reply_branches() -> str:
    """The three reply shapes as JSON text: building them costs pydantic more than a request."""
    branches = []
    for model in (ShipReply, SkipReply, AbstainReply):
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema["properties"].values():
            prop.pop("title", None)
            # Grammar converters drop integer bounds, but every one of them honours an enum.
            if prop.get("type") == "integer" and "minimum" in prop:
                prop["enum"] = list(range(prop["minimum"], prop["maximum"] + 1))
        branches.append(schema)
    return json.dumps(branches)


def reply_json_schema(lead: str | None = None) -> dict:
    """A self-contained schema (no $ref) so every grammar converter can take it.

    With `lead` (the tool's name), a take must open with it: small models given worked
    examples otherwise copy the example's subject instead of judging the tool in front of them.
    """
    branches = json.loads(_reply_branches())  # a fresh copy: callers may change it
    literal = pattern_literal(lead) if lead else None
    for schema in branches:
        if literal and "take" in schema["properties"]:
            take = schema["properties"]["take"]
            room = take["maxLength"] - len(lead or "") - 1
            take["pattern"] = "^" + literal + " " + take_body(take["minLength"], room)
    return {"anyOf": branches}


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    # Of the tokens above, those answered through a Batch API (batch mode), priced at half.
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            batch_prompt_tokens=self.batch_prompt_tokens + other.batch_prompt_tokens,
            batch_completion_tokens=self.batch_completion_tokens + other.batch_completion_tokens,
        )


class Criterion(BaseModel):
    """One checklist question as asked about one tool: the model's P(yes) and what it weighs."""

    id: str
    label: str
    weight: float
    p_yes: float | None = None
    # 'logprobs' when P(yes) came from token log-probabilities, 'sampled' when only the
    # answer text was available (1.0 or 0.0), 'card' when read from the card by a rule
    # (1.0 or 0.0), 'failed' when every attempt failed.
    source: Literal["logprobs", "sampled", "card", "failed"] = "logprobs"
    # Met means P(yes) at or above this reference point: for a question, its mean answer over
    # the labelled tools its weight was fitted on (the persona file's `means`), so that
    # weight * (P(yes) - baseline) is what the answer added to the score beside a typical tool;
    # 0.5 for a fact read from the card (1.0 or 0.0). Never the other answers of the same take.
    baseline: float = 0.5
    # The card fact that settles this question ("not ID": it holds when the fact does not),
    # from the persona file's `settled_by`.
    settled_by: str | None = None

    @property
    def met(self) -> bool | None:
        return None if self.p_yes is None else self.p_yes >= self.baseline


def _agrees_with_card(c: Criterion, facts: dict[str, bool]) -> bool:
    """Whether a criterion's answer says what the card fact settling it says (True when no fact
    settles it, or the fact is not among the take's criteria)."""
    if c.settled_by is None:
        return True
    fact = c.settled_by.removeprefix("not ")
    if fact not in facts:
        return True
    return c.met == (facts[fact] != c.settled_by.startswith("not "))


def by_effect(criteria: list[Criterion]) -> tuple[list[Criterion], list[Criterion], list[Criterion]]:
    """The criteria behind a checklist score by what they did to it: (for, against, lacking).

    A criterion's weight carries its direction (the persona file's `counts`, scaled by
    calibration), and its answer against its reference point says which way it moved the score.
    One that counts for the tool and holds raised the score; one that counts against it and
    holds lowered it; one that counts for it and does not hold is what the tool lacks. A weight
    of zero moved nothing, so it explains nothing and is left out, and so is a problem the tool
    does not have. A question that a card fact settles is listed only where its answer says
    what the card says: the fact speaks for the card, and a model answer never contradicts it."""
    facts = {c.id: bool(c.met) for c in criteria if c.source == "card" and c.met is not None}
    shown = [c for c in criteria if _agrees_with_card(c, facts)]
    return (
        [c for c in shown if c.weight > 0 and c.met],
        [c for c in shown if c.weight < 0 and c.met],
        [c for c in shown if c.weight > 0 and c.met is False],
    )


class Take(BaseModel):
    """One persona's take on one tool, or its abstention, with how it was produced."""

    persona: str
    verdict: Literal["ship", "skip"] | None = None
    score: Annotated[int, Field(ge=0, le=100)] | None = None
    # The argument itself. Stored in the `take` column (analysts' name for it), and read back
    # from that name too, as are checkpoints written before the field was renamed.
    text: str | None = Field(
        default=None, validation_alias=AliasChoices("text", "take"), serialization_alias="take"
    )
    abstain_reason: str | None = None
    error: str | None = None
    model: str = ""
    prompt_version: str = ""
    prompt_hash: str = ""
    temperature: float = 0.0
    attempts: int = 1
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int = 0
    suspicious: bool = False
    # Why this take was asked for again (an editor's rerun); None for a first review. Stored in
    # the `reason` column (the run's word for it), and read back from that name too.
    rerun_reason: str | None = Field(
        default=None, validation_alias=AliasChoices("rerun_reason", "reason"), serialization_alias="reason"
    )
    clean_score: int | None = None
    grounded: bool | None = None
    # The text was composed from the checklist (take_checks.compose_take) because every take
    # the model wrote stated what the card does not say; verdict and score are the persona's own.
    composed: bool = False
    samples: int = 1
    score_spread: int | None = None
    verdict_flips: float = 0.0
    # How the score was made: 'checklist' (weighted yes/no criteria) or 'holistic' (one score).
    # The default is the settings' (SHIPSKIP_SCORING), so a take made without saying means one thing.
    scoring: Literal["checklist", "holistic"] = "checklist"
    relevance: float | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    # Which calibration scored a checklist take (shipskip.calibrations): the model's fitted one,
    # or, with `uncalibrated`, the label-free correction for a model that has none.
    calibration: str | None = None
    uncalibrated: bool = False
    # Whether the persona's verdict counts in the panel: not where its persona has shown no signal
    # on the model that answered (kappa below SHIPSKIP_COUNT_KAPPA_MIN), and why not.
    counted: bool = True
    not_counted_reason: str | None = None
    # The chance the persona's call is "ship", from its calibrated score (the fit's out-of-fold
    # curve); None where no curve is known (holistic, uncalibrated, older calibrations).
    p_ship: Annotated[float, Field(ge=0, le=1)] | None = None

    @property
    def abstained(self) -> bool:
        return self.verdict is None

    @property
    def calibration_note(self) -> str | None:
        """What a reader must be told about this take's scale: "uncalibrated for MODEL"."""
        return f"uncalibrated for {self.model}" if self.uncalibrated else None

    @property
    def in_favour(self) -> list[Criterion]:
        return by_effect(self.criteria)[0]

    @property
    def against(self) -> list[Criterion]:
        return by_effect(self.criteria)[1]

    @property
    def lacking(self) -> list[Criterion]:
        return by_effect(self.criteria)[2]

    @property
    def why(self) -> str:
        """The criteria behind the score in one line, for the CLI and the pages."""
        if not self.criteria:
            return ""
        parts = [
            f"{name}: {', '.join(c.label for c in group)}"
            for name, group in zip(("for", "against", "lacking"), by_effect(self.criteria), strict=True)
            if group
        ]
        return "; ".join(parts) or "no weighted criterion decided it"

    @classmethod
    def from_reply(cls, persona: str, reply: ShipReply | SkipReply | AbstainReply, **meta) -> Take:
        if isinstance(reply, AbstainReply):
            return cls(persona=persona, abstain_reason=reply.reason, **meta)
        return cls(
            persona=persona, verdict=reply.verdict, score=reply.score, text=clean_text(reply.take), **meta
        )

    @classmethod
    def abstention(cls, persona: str, why: str, error: str | None = None, **meta) -> Take:
        return cls(persona=persona, abstain_reason=why, error=error, **meta)


class PanelVerdict(BaseModel):
    ship: int
    skip: int
    abstain: int
    ship_pct: int | None
    label: Literal["Ship", "Skip", "Mixed", "No verdict"]
    flagged: int = 0  # takes flagged for prompt injection, left out of ship and skip
    # Personas that spoke but do not count on their model (no signal there): shown, not counted.
    not_counted: int = 0
    # The chance the label would come out otherwise were each counted persona's call drawn from
    # its P(ship); None where a counted persona has no P(ship) or there is no verdict.
    flip_chance: float | None = None
    # flip_chance above SHIPSKIP_CONTESTED_ABOVE (as the caller of panel.aggregate set it).
    contested: bool = False

    @property
    def line(self) -> str:
        """The verdict as the pages print it, e.g. 'Ship · 3 ship / 1 skip'."""
        return (
            f"{self.label} · {self.ship} ship / {self.skip} skip{self.contested_note}"
            f"{self.not_counted_note}{self.flagged_note}"
        )

    @property
    def contested_note(self) -> str:
        if not self.contested or self.flip_chance is None:
            return ""
        return f" · contested ({round(100 * self.flip_chance)}% chance it would flip)"

    @property
    def not_counted_note(self) -> str:
        if not self.not_counted:
            return ""
        count = f"{self.not_counted} persona{'s' if self.not_counted > 1 else ''}"
        return f" · {count} not counted (no signal on this model)"

    @property
    def flagged_note(self) -> str:
        if not self.flagged:
            return ""
        return f" · {self.flagged} flagged take{'s' if self.flagged > 1 else ''} not counted"

    @property
    def pct_text(self) -> str:
        return "n/a" if self.ship_pct is None else f"{self.ship_pct}%"


class CommunityVotes(BaseModel):
    ship: int = 0
    skip: int = 0

    @property
    def text(self) -> str:
        total = self.ship + self.skip
        if total == 0:
            return "No community votes yet"
        pct = (200 * self.ship + total) // (2 * total)
        return f"{pct}% Ship ({self.ship} / {total} voter{'s' if total != 1 else ''})"


class EditorLabel(BaseModel):
    """An editor's own call on one persona of one tool (`shipskip label`), shown beside the
    panel's take and used as a label by `calibrate --with-labels`."""

    slug: str
    persona: str
    editor: str
    verdict: Literal["ship", "skip", "abstain"]
    score: Annotated[int, Field(ge=0, le=100)] | None = None
    reason: str
    created_at: datetime | None = None

    @property
    def text(self) -> str:
        """ "Editor: skip (reason)" as pages show it, with the score where the editor gave one."""
        call = self.verdict if self.score is None else f"{self.verdict}, {self.score}/100"
        return f"Editor: {call} ({self.reason})"
