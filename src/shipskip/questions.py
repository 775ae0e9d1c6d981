"""Asking one persona's questions: P(yes) to each checklist question from the persona's client
(or a Batch API job's answers), and how the persona's answers are scored, looked up once per
persona and model. `review.Panel` builds the takes on top."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from . import calibrations
from .batch import question_id
from .calibrations import ModelKey, Scoring
from .errors import LLMFailure
from .llm import LLMClient
from .models import Criterion, ToolCard, Usage
from .personas import Item, PromptSet, question_messages
from .settings import Settings


@dataclass
class Spend:
    """What one take cost across its calls, and which models answered."""

    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    models: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    # Why our checks refused the take's text, when that is how writing it ended.
    rejected: str | None = None
    # What each refused attempt at the take got wrong: 'form' (echo, stance, length) or a kind
    # of `take_checks.Unsupported` (a number, name, placeholder or claim the card lacks).
    refusals: list[str] = field(default_factory=list)

    def add(self, usage: Usage, attempts: int, model: str | None = None, error: str | None = None) -> None:
        self.usage, self.attempts = self.usage + usage, self.attempts + attempts
        if model:
            self.models.add(model)
        if error:
            self.errors.append(error)


@dataclass
class PersonaAsker:
    """The personas' clients and prompts, asked one question at a time."""

    prompts: PromptSet
    clients: dict[str, LLMClient]
    settings: Settings
    # Each persona's model as its calibration is looked up: the model asked for, and for a GGUF
    # the embedded server serves, the file's digest. Empty: the client's model, no digest.
    keys: dict[str, ModelKey] = field(default_factory=dict)
    # Batch mode: answers a Batch API job gave, by custom_id (`batch.question_id`); a question
    # found here is not asked again.
    batched: dict[str, dict[str, Any]] = field(default_factory=dict)
    _scorings: dict[tuple, Scoring] = field(default_factory=dict, repr=False)
    _persona_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def key(self, persona: str) -> ModelKey:
        return self.keys.get(persona) or ModelKey(self.clients[persona].model)

    def scoring(self, persona: str, spend: Spend | None = None) -> Scoring:
        """How this persona's answers are scored: with the fitted calibration of the model that
        answered (the id the provider reported, else the one asked for), or, where none was
        fitted, corrected by the model's content-free bias and weighed generically."""
        spend = spend or Spend()
        asked = self.key(persona)
        names = list(dict.fromkeys([*sorted(spend.models), asked.model]))
        with self._lock:
            lock = self._persona_locks.setdefault(persona, threading.Lock())
        with lock:  # the bias of a model is measured once per persona, however many tools wait
            cached = self._scorings.get((persona, *names))
            if cached is not None:
                return cached
            p = self.prompts.personas[persona]
            where = str(self.settings.calibrations_dir)
            for name in names:
                key = ModelKey(name, asked.digest)
                entry = calibrations.find_fitted(self.settings.calibrations_dir, key, persona, p.version)
                if entry is not None:
                    found = Scoring(
                        calibrations.apply(p.checklist, entry.calibration, where), model=name,
                        label=calibrations.fitted_label(key, persona, entry), figures=entry.figures,
                    )  # fmt: skip
                    break
            else:
                key = ModelKey(names[0], asked.digest)
                generic = calibrations.generic_calibration(
                    p.checklist, calibrations.reference_calibration(persona, p.version),
                    self.settings.uncalibrated_points,
                )  # fmt: skip
                found = Scoring(
                    calibrations.apply(p.checklist, generic, where), model=key.model,
                    label=f"uncalibrated for {key}: contextual correction, generic weights",
                    uncalibrated=True, bias=self.bias(persona, key, spend),
                )  # fmt: skip
            self._scorings[(persona, *names)] = found
            return found

    def bias(self, persona: str, key: ModelKey, spend: Spend) -> dict[str, float]:
        """The model's mean P(yes) to each of this persona's questions on content-free cards: read
        from the model's calibration file where this prompt's was measured before, else asked
        now and kept there (a few dozen requests, once per model and prompt)."""
        prompt_hash = self.prompts.prompt_hash(persona)
        folder = self.settings.calibrations_dir
        stored = calibrations.read(folder, key)
        for b in stored.contextual if stored else []:
            if b.persona == persona and b.prompt_hash == prompt_hash:
                return b.p_yes
        p = self.prompts.personas[persona]
        questions = {i.id: i.question for i in p.checklist.items if i.question}
        if p.checklist.relevance is not None:
            questions["relevance"] = p.checklist.relevance.question
        measured: dict[str, float] = {}
        for item_id, question in questions.items():
            got = [
                a
                for card in calibrations.content_free_cards()
                if (a := self.answer(persona, card, question, spend)[0]) is not None
            ]
            if got:
                measured[item_id] = round(sum(got) / len(got), 4)
        if len(measured) == len(questions):  # a measurement the provider cut short is not kept
            bias = calibrations.Bias(persona=persona, prompt_hash=prompt_hash, p_yes=measured)

            def keep(data: calibrations.CalibrationFile) -> calibrations.CalibrationFile:
                kept = [b for b in data.contextual if (b.persona, b.prompt_hash) != (persona, prompt_hash)]
                return data.model_copy(update={"contextual": [*kept, bias]})

            calibrations.update(folder, key, keep)
        return measured

    def _meta(self, persona: str, rerun_reason: str | None) -> dict:
        client = self.clients[persona]
        return dict(
            model=client.model,
            prompt_version=self.prompts.personas[persona].version,
            prompt_hash=self.prompts.prompt_hash(persona),
            temperature=self.settings.provider_for(persona).temperature or 0.0,
            rerun_reason=rerun_reason,
            scoring=self.settings.scoring,
        )

    def answer(self, persona: str, card: ToolCard, question: str, spend: Spend) -> tuple[float | None, str]:
        """P(yes) to one question about one card, and where it came from; None when it failed."""
        if self.batched:
            got = self.batched.get(question_id(persona, self.prompts.prompt_hash(persona), card, question))
            if got is not None:
                tokens = (got["prompt_tokens"], got["completion_tokens"])
                usage = Usage(prompt_tokens=tokens[0], completion_tokens=tokens[1],
                              batch_prompt_tokens=tokens[0], batch_completion_tokens=tokens[1])  # fmt: skip
                spend.add(usage, 1, model=got["model"])
                return got["p_yes"], got["source"]
        try:
            a = self.clients[persona].yes_probability(
                question_messages(self.prompts, persona, card, question),
                max_tokens=self.settings.checklist_max_tokens,
            )
        except LLMFailure as exc:
            spend.add(exc.usage, exc.attempts, error=str(exc))
            return None, "failed"
        spend.add(a.usage, a.attempts, model=a.model)
        return a.p_yes, a.source

    def raw_answers(self, persona: str, card: ToolCard, spend: Spend) -> list[tuple[Item, float | None, str]]:
        """Every checklist question of one persona, each asked on its own: (item, P(yes),
        source) as the model gave them; facts read from the card come as (item, None, 'card')."""
        checklist = self.prompts.personas[persona].checklist
        return [
            (item, *self.answer(persona, card, item.question, spend))
            if item.question
            else (item, None, "card")
            for item in checklist.items
        ]  # fmt: skip

    def criteria(
        self, persona: str, card: ToolCard, spend: Spend, scoring: Scoring | None = None
    ) -> list[Criterion]:
        """Every checklist question of one persona, scored as `scoring` says (by default this
        persona's calibration for the model that answered)."""
        answers = self.raw_answers(persona, card, spend)
        return (scoring or self.scoring(persona, spend)).criteria(card, answers)
