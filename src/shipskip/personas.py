"""Personas as data: load and validate prompt files, and render the messages for one take."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from jinja2 import DictLoader, Environment, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, UnknownPersona, describe_validation_error
from .models import REPLY_ADAPTER, Criterion, ToolCard, by_effect
from .roster import discover
from .untrusted import load_yaml

Line = Annotated[str, Field(min_length=3, max_length=300)]


class Example(BaseModel):
    """A worked take on an invented tool, to show a small model the voice and the format."""

    model_config = ConfigDict(extra="forbid")
    tool: Annotated[str, Field(min_length=10, max_length=600)]
    reply: dict

    def model_post_init(self, _: object) -> None:
        REPLY_ADAPTER.validate_python(self.reply)


Question = Annotated[str, Field(min_length=10, max_length=240)]
Label = Annotated[str, Field(min_length=3, max_length=60)]


CardField = Literal["name", "tagline", "category", "pricing", "entry_tier", "description"]


class CardFact(BaseModel):
    """A yes/no item read from the card's own words rather than asked of the model: "yes" when
    the pattern occurs (case-insensitive) in any of the fields, as normalised when the card
    was read. For facts a card states outright (its entry tier, its licence, a price), a
    rule is cheaper than a question and, on a small model, far more reliable."""

    model_config = ConfigDict(extra="forbid")
    fields: Annotated[list[CardField], Field(min_length=1)]
    pattern: Annotated[str, Field(min_length=2, max_length=400)]

    def model_post_init(self, _: object) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None

    def holds(self, card: ToolCard) -> bool:
        rx = _compiled(self.pattern)
        return any(rx.search(str(getattr(card, f))) for f in self.fields)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


class Item(BaseModel):
    """One yes/no item in a persona's checklist: a question for the model, or a fact read
    from the card (`from_card`).

    `counts` is the lens: whether a "yes" speaks for the tool or against it. Calibration fits
    how much each answer weighs but never flips that direction.
    """

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
    question: Question | None = None
    from_card: CardFact | None = None
    label: Label
    counts: Literal["for", "against"]
    # A question about something the card states outright: the `from_card` item of this
    # checklist that settles it ("not ID" where the question holds exactly when that fact does
    # not). Its answer is then never listed against what the card says (models.by_effect).
    settled_by: Annotated[str, Field(pattern=r"^(not )?[a-z][a-z0-9_]{1,40}$")] | None = None

    def model_post_init(self, _: object) -> None:
        if (self.question is None) == (self.from_card is None):
            raise ValueError(f"item '{self.id}' needs either a question or from_card, not both")
        if self.settled_by is not None and self.from_card is not None:
            raise ValueError(f"item '{self.id}' is read from the card: only a question is settled_by one")

    @property
    def sign(self) -> int:
        return 1 if self.counts == "for" else -1

    @property
    def settling_fact(self) -> tuple[str, bool] | None:
        """The fact that settles this question and whether the question holds when it does."""
        if self.settled_by is None:
            return None
        negated = self.settled_by.startswith("not ")
        return self.settled_by.removeprefix("not "), not negated


class Relevance(BaseModel):
    """The question whose "no" makes the persona abstain with "No panel take".

    `in_lens` and `out_of_lens` name checklist items that bear on whether the tool is this
    persona's business at all (for the Founder: the card offers something for money; for the
    Creator: it is back-end plumbing). The abstention formula reads only these and the answer
    to the question, each held to its direction: a fit on a few dozen tools may say how much
    they weigh, never which way they point, and cannot lean on items that judge quality."""

    model_config = ConfigDict(extra="forbid")
    question: Question
    abstain_reason: Line
    in_lens: list[str] = Field(default_factory=list)
    out_of_lens: list[str] = Field(default_factory=list)

    @property
    def signals(self) -> dict[str, int]:
        """Each declared item with the way a "yes" points: +1 towards abstaining, -1 away."""
        return {**{i: -1 for i in self.in_lens}, **{i: 1 for i in self.out_of_lens}}


class Calibration(BaseModel):
    """Weights fitted on the labelled reference set for one model (`shipskip calibrate`), kept
    in a calibration file apart from the prompts (shipskip.calibrations) and put on the
    checklist when a take is scored.

    score = base + sum(weight[i] * P(yes)[i]) + yes_rate_weight * mean(P(yes)), clamped to
    0-100; the verdict follows the score. The yes-rate term takes out how readily the model
    says yes about this card at all (a small model's answers share a large per-card bias), so
    the item weights measure what each answer adds beyond it.
    The persona abstains when abstain_base + sum(abstain_weights[f] * x[f]) > 0, over the
    relevance answer, the items and the yes-rate; with no abstain weights it never abstains
    (unless its relevance answer is below abstain_below).
    `means` is each question's average P(yes) on the reference set, used for a question whose
    every attempt failed, so a lost answer counts as neutral.
    `tools` and `tools_digest` say which labelled tools the fit saw (their count, and a digest of
    their slugs), so `shipskip eval` can tell in-sample figures from held-out ones even after the
    reference file at the recorded path has grown.
    """

    model_config = ConfigDict(extra="forbid")
    command: str = ""
    fitted_on: str = ""
    tools: int = 0
    tools_digest: str = ""
    base: float = 50.0
    weights: dict[str, float] = Field(default_factory=dict)
    yes_rate_weight: float = 0.0
    means: dict[str, float] = Field(default_factory=dict)
    abstain_below: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    abstain_base: float = 0.0
    abstain_weights: dict[str, float] = Field(default_factory=dict)


class Checklist(BaseModel):
    model_config = ConfigDict(extra="forbid")
    relevance: Relevance | None = None
    items: Annotated[list[Item], Field(min_length=6, max_length=16)]
    calibration: Calibration = Field(default_factory=Calibration)

    def model_post_init(self, _: object) -> None:
        ids = [i.id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be unique")
        for item in self.items:
            w = self.calibration.weights.get(item.id)
            if w is not None and w * item.sign < 0:
                raise ValueError(f"calibration weight for '{item.id}' has the wrong sign for counts")
        facts = {i.id for i in self.items if i.from_card is not None}
        for item in self.items:
            fact = item.settling_fact
            if fact is not None and fact[0] not in facts:
                raise ValueError(f"item '{item.id}': settled_by '{fact[0]}' is not a from_card item here")
        if self.relevance is not None:
            declared = [*self.relevance.in_lens, *self.relevance.out_of_lens]
            if len(set(declared)) != len(declared):
                raise ValueError("relevance: an item is named twice in in_lens/out_of_lens")
            if missing := set(declared) - set(ids):
                raise ValueError(f"relevance names unknown items: {', '.join(sorted(missing))}")
        unknown = (set(self.calibration.weights) - set(ids)) | (
            set(self.calibration.abstain_weights) - {*ids, "relevance", "yes_rate"}
        )
        if unknown:
            raise ValueError(f"calibration names unknown items: {', '.join(sorted(unknown))}")

    def weight(self, item: Item) -> float:
        # Before calibration every "yes" moves the score by ten points in the lens's direction.
        return self.calibration.weights.get(item.id, 10.0 * item.sign)

    def mean(self, item: Item) -> float:
        return self.calibration.means.get(item.id, 0.5)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z]+$")]
    title: Annotated[str, Field(min_length=3, max_length=40)]
    # Where the persona sits (pages, tables, the panel's order) and its colour in charts.
    order: Annotated[int, Field(ge=0, le=999)]
    colour: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z._-]{1,20}$")]
    role: Line
    asks: Annotated[list[Line], Field(min_length=2, max_length=8)]
    rewards: Annotated[list[Line], Field(min_length=1, max_length=8)]
    tired_of: Annotated[list[Line], Field(min_length=1, max_length=8)]
    abstain_when: Line | None = None
    examples: Annotated[list[Example], Field(min_length=1, max_length=4)]
    checklist: Checklist
    source_text: str = Field(default="", exclude=True, repr=False)


class PromptSet(BaseModel):
    """Everything a take's prompt is built from, with a hash that changes when any of it does."""

    personas: dict[str, Persona]
    templates: dict[str, str]

    def prompt_hash(self, persona: str) -> str:
        h = hashlib.sha256()
        for name in sorted(self.templates):
            h.update(name.encode() + b"\0" + self.templates[name].encode() + b"\0")
        h.update(self.personas[persona].source_text.encode())
        return h.hexdigest()[:16]


TEMPLATE_FILES = ("panel.system.j2", "card.j2", "review.user.j2", "question.user.j2", "take.user.j2")


def load_persona(path: Path) -> Persona:
    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(path, "file", f"unreadable: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise InputError(path, "file", "must be a YAML mapping")
    if isinstance(data.get("checklist"), dict) and "calibration" in data["checklist"]:
        # Calibration is data about a model, not part of a prompt: in a persona file it would
        # change the prompt hash (and every cache key) on each refit, and hold one model's weights.
        raise InputError(
            path, "checklist.calibration", "calibrations live in calibration files now (shipskip calibrate)"
        )
    try:
        persona = Persona.model_validate(data)
    except ValidationError as exc:
        field, msg = describe_validation_error(exc)
        raise InputError(path, field, msg) from exc
    if persona.name != path.stem.split("@")[0]:
        raise InputError(path, "name", f"must match the file name '{path.stem}'")
    return persona.model_copy(update={"source_text": text})


def load_prompts(prompts_dir: Path, versions: dict[str, str | None] | None = None) -> PromptSet:
    """The current persona files, or for a persona in `versions`, its archived `name@V.yaml`."""
    personas = {}
    found = discover(prompts_dir)
    if not found:
        raise InputError(prompts_dir / "personas", "file", "no persona files (NAME.yaml)")
    for name in (s.name for s in found):
        wanted = (versions or {}).get(name)
        persona = load_persona(prompts_dir / "personas" / f"{name}.yaml")
        if wanted and wanted != persona.version:
            path = prompts_dir / "personas" / f"{name}@{wanted}.yaml"
            if not re.fullmatch(r"[0-9A-Za-z._-]{1,20}", wanted) or not path.is_file():
                raise InputError(path, "version", f"no prompt version '{wanted}' for {name}")
            persona = load_persona(path)
            if persona.version != wanted:
                raise InputError(path, "version", f"says '{persona.version}', expected '{wanted}'")
        personas[name] = persona
    templates = {}
    for name in TEMPLATE_FILES:
        path = prompts_dir / name
        try:
            templates[name] = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(path, "file", "missing prompt template") from exc
    return PromptSet(personas=personas, templates=templates)


def check_persona(prompts_dir: Path, persona: str) -> None:
    """Raise UnknownPersona unless `persona` has a file in the panel's prompts."""
    known = tuple(load_prompts(prompts_dir).personas)
    if persona not in known:
        raise UnknownPersona(persona, known)


@cache
def _env(templates: tuple[tuple[str, str], ...]) -> Environment:
    env = Environment(
        loader=DictLoader(dict(templates)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fence"] = fence
    env.filters["tojson_compact"] = _tojson_compact
    return env


_DELIM_RE = re.compile(r"</?\s*(tool_card|tool|description|system|instructions?)\b[^>]*>", re.I)


def fence(text: str) -> str:
    """Untrusted text cannot close or open the delimiters that mark it as data."""
    return _DELIM_RE.sub(lambda m: m.group(0).replace("<", "(").replace(">", ")"), text)


def _tojson_compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _messages(prompts: PromptSet, template: str, **context: object) -> list[dict[str, str]]:
    """Shared part first (rules, then the delimited card) so providers can cache the prefix."""
    env = _env(tuple(sorted(prompts.templates.items())))
    system = env.get_template("panel.system.j2").render().strip()
    user = env.get_template(template).render(**context).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_messages(prompts: PromptSet, persona: str, card: ToolCard) -> list[dict[str, str]]:
    """The holistic prompt: one reply with verdict, score and take."""
    return _messages(prompts, "review.user.j2", card=card, persona=prompts.personas[persona])


def question_messages(
    prompts: PromptSet, persona: str, card: ToolCard, question: str
) -> list[dict[str, str]]:
    """One checklist question, asked after the shared card prefix, answered Yes or No."""
    p = prompts.personas[persona]
    return _messages(prompts, "question.user.j2", card=card, persona=p, question=question)


def take_messages(
    prompts: PromptSet,
    persona: str,
    card: ToolCard,
    verdict: str,
    score: int,
    criteria: list[Criterion],
) -> list[dict[str, str]]:
    """The take is written last, told the verdict, the score and the criteria behind them (what
    raised the score, what lowered it, what the tool lacks), so its text argues its verdict."""
    # Each group heaviest first; how many of each the writer is told is the template's to say
    # (take.user.j2), so it is part of the prompt and of its hash.
    favour, against, lacking = (
        [c.label for c in sorted(group, key=lambda c: -abs(c.weight))] for group in by_effect(criteria)
    )
    return _messages(
        prompts, "take.user.j2", card=card, persona=prompts.personas[persona], verdict=verdict,
        score=score, favour=favour, against=against, lacking=lacking,
    )  # fmt: skip


def take_instructions(messages: list[dict[str, str]]) -> str:
    """The instruction part of the take prompt (the rules, and what follows the card), which a
    take must not repeat; the card itself is the tool's own words and may be quoted."""
    return messages[0]["content"] + "\n" + messages[1]["content"].split("</tool_card>")[-1]


def shared_prefix(prompts: PromptSet, card: ToolCard) -> str:
    """The part of the user message that is the same for all five personas."""
    texts = [render_messages(prompts, name, card)[1]["content"] for name in prompts.personas]
    prefix = texts[0]
    for t in texts[1:]:
        while not t.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def tools_digest(slugs: Iterable[str]) -> str:
    """Which set of labelled tools a fit saw, in a few characters: order does not matter."""
    return hashlib.sha256("\n".join(sorted(set(slugs))).encode()).hexdigest()[:16]
