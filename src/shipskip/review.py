"""One persona's take on one tool, and the providers the panel talks to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import calibrations
from .calibrations import ModelKey, Scoring
from .checklist import abstains, below_relevance, score_from
from .costs import Budget
from .embedded import embedded_model_name, embedded_server, model_path
from .errors import LLMFailure, Stopped, UncalibratedModel
from .injection import gives_orders, score_jumped, without_suspicious
from .llm import LLMClient
from .models import Criterion, Take, ToolCard, pattern_literal, verdict_for
from .personas import PromptSet, render_messages, take_instructions, take_messages
from .quality import consensus, grounding
from .questions import PersonaAsker, Spend
from .rates import CircuitBreaker, RateGovernor
from .redaction import redactor_for
from .settings import Settings
from .take_checks import compose_take, take_problem, unsupported
from .untrusted import clean_text

# A slot to hold while a persona is asked: Prefect's global concurrency limit in a flow on a
# shared server, so every worker counts against one SHIPSKIP_LLM_CONCURRENCY.
SlotFactory = Callable[[], AbstractContextManager[Any]]


def take_opening(verdict: str, name: str) -> str:
    """The words a take must open with, so its stance is its verdict's by construction."""
    return f"I {verdict} {name} because it" if pattern_literal(name) else f"I {verdict} this tool because it"


@dataclass
class Panel(PersonaAsker):
    """The personas' clients and prompts: asks one persona for its take (a flow run, an ingest or
    an eval holds one). The takes together are the panel (`panel.aggregate`)."""

    persona_slot: SlotFactory = nullcontext
    # Threads the personas are asked in, kept for as long as the panel: starting five threads
    # for every tool cost an ingest 5% of its time.
    pool: ThreadPoolExecutor | None = None
    # Set when the process stops (SIGTERM, Ctrl-C, a failure that ends the run): no persona
    # starts, and a persona in flight stops before its next call (its clients share it).
    stop: threading.Event = field(default_factory=threading.Event)
    # The run's spending cap (an ingest's), shared by its personas: none starts once it is reached.
    budget: Budget | None = None

    def ask(self, persona: str, card: ToolCard, rerun_reason: str | None = None) -> Take:
        """One persona's take on one card: graded by its checklist, or one holistic reply."""
        if self.budget is None:
            return self._ask(persona, card, rerun_reason)
        self.budget.start()  # raises BudgetReached: the persona is left for the next run
        take = None
        try:
            take = self._ask(persona, card, rerun_reason)
        finally:
            self.budget.finished(take)
        return take

    def _ask(self, persona: str, card: ToolCard, rerun_reason: str | None = None) -> Take:
        # A persona asks one question at a time, so personas in flight bound calls in flight; a slot
        # per persona rather than per call keeps the cross-process limit to one round trip a take.
        with ExitStack() as held:
            while True:
                if self.stop.is_set():
                    raise Stopped(card.slug, persona)
                try:
                    held.enter_context(self.persona_slot())
                    break
                except TimeoutError:
                    # A slot that waits a bounded time (the global limit's) is asked for again,
                    # so a persona still waiting notices a stop instead of holding the process.
                    continue
            if self.settings.scoring == "checklist":
                take = self.graded(persona, card, rerun_reason)
            else:
                take = self.holistic(persona, card, rerun_reason)
        if take.error:
            # A persona that failed as its provider was given up on is the dead provider's doing,
            # not this tool's: it fails (ProviderDown) rather than become an abstention.
            self.clients[persona].check_provider()
        return take

    def graded(self, persona: str, card: ToolCard, rerun_reason: str | None = None) -> Take:
        """Checklist grading: relevance, then each question on its own, then the take.

        Every question is asked after the same rules-and-card prefix, so the provider's prefix
        cache serves it; the score is the calibrated weighted sum of P(yes), the verdict follows
        the score, and the take is written last, told both, so its text agrees with them.
        When the card holds text aimed at the panel, the score is computed again without it;
        a move of SHIPSKIP_FLAG_DELTA or a flipped verdict marks the take suspicious.
        """
        meta = self._meta(persona, rerun_reason)
        p = self.prompts.personas[persona]
        spend = Spend()
        started = time.perf_counter()
        rel = p.checklist.relevance
        p_rel = self.answer(persona, card, rel.question, spend)[0] if rel is not None else None
        scoring: Scoring | None = None

        def done(**fields: object) -> Take:
            counted, why = calibrations.persona_standing(
                scoring.figures if scoring else {}, p.title, self.settings.count_kappa_min
            )
            score = fields.get("score")
            return Take(
                persona=persona, attempts=spend.attempts, usage=spend.usage, relevance=p_rel,
                latency_ms=int((time.perf_counter() - started) * 1000),
                calibration=scoring.label if scoring else None,
                uncalibrated=bool(scoring and scoring.uncalibrated),
                counted=counted, not_counted_reason=why,
                p_ship=scoring.p_ship(score) if scoring and isinstance(score, int) else None,
                **{**meta, "model": ", ".join(sorted(spend.models)) or meta["model"], **fields},
            )  # fmt: skip

        no_answer = "the model gave no valid answer"
        if rel is not None and p_rel is None:
            return done(abstain_reason=no_answer, error=spend.errors[-1])
        outside = rel.abstain_reason if rel else "outside my lens"
        if rel is not None:
            # Known once the model has answered: the calibration is that model's.
            scoring = self.scoring(persona, spend)
            p_rel = scoring.correct("relevance", p_rel)
            if below_relevance(scoring.checklist, p_rel):
                return done(abstain_reason=outside)
        answers = self.raw_answers(persona, card, spend)
        scoring = scoring or self.scoring(persona, spend)
        checklist = scoring.checklist
        criteria = scoring.criteria(card, answers)
        if sum(c.p_yes is None for c in criteria) * 2 > len(criteria):
            return done(abstain_reason=no_answer, error=spend.errors[-1], criteria=criteria)
        if abstains(checklist, p_rel, criteria):
            return done(abstain_reason=outside, criteria=criteria)
        score = score_from(checklist, criteria)
        verdict = verdict_for(score)
        check: dict = {}
        clean = without_suspicious(card)
        if clean is not None:
            clean_score = score_from(checklist, self.criteria(persona, clean, spend, scoring))
            check = {
                "clean_score": clean_score,
                "suspicious": score_jumped(
                    score, clean_score, verdict, verdict_for(clean_score), self.settings.flag_delta
                ),
            }
        text, composed = self.take_text(persona, card, verdict, score, criteria, spend)
        if text is None:
            why = "the model could not write a take that fits its verdict"
            return done(abstain_reason=why, error=spend.errors[-1], criteria=criteria, **check)
        return done(
            verdict=verdict, score=score, text=text, criteria=criteria, composed=composed,
            grounded=grounding(text, card), **check,
        )  # fmt: skip

    def take_text(
        self, persona: str, card: ToolCard, verdict: str, score: int, criteria: list[Criterion], spend: Spend
    ) -> tuple[str | None, bool]:
        """The take's text, and whether it was composed from the checklist.

        When the provider answered every attempt and our checks refused every text (it stated
        what the card does not, or did not fit its verdict), the take is composed from the
        persona's criteria instead: the persona keeps the verdict its checklist gave it rather than
        abstaining for the writer's faults. None only when the provider itself failed."""
        text = self.write(persona, card, verdict, score, criteria, spend)
        if text is not None:
            return text, False
        if spend.rejected:
            return compose_take(card, verdict, score, criteria), True
        return None, False

    def write(
        self, persona: str, card: ToolCard, verdict: str, score: int, criteria: list[Criterion], spend: Spend
    ) -> str | None:
        """The take, written after the verdict and checked in code; None when every attempt failed."""
        p = self.prompts.personas[persona]
        messages = take_messages(self.prompts, persona, card, verdict, score, criteria)
        instructions = take_instructions(messages)
        opening = take_opening(verdict, card.name)
        # The criteria the prompt shows are our words, so a take may repeat their names.
        labels = [c.label for c in criteria]

        def check(text: str) -> str | None:
            problem = take_problem(text, verdict, p, instructions, opening)
            if problem:
                spend.refusals.append("form")
                return problem
            bad = unsupported(text, card, score, labels)
            if bad:
                spend.refusals.append(bad.kind)
                return bad.message
            return None

        try:
            written = self.clients[persona].write_take(
                messages,
                check,
                temperature=self.settings.provider_for(persona).temperature or 0.0,
                max_tokens=self.settings.max_tokens,
                opening=opening,
            )
        except LLMFailure as exc:
            if exc.rejected:
                spend.add(exc.usage, exc.attempts)
                spend.rejected = exc.rejected
            else:
                spend.add(exc.usage, exc.attempts, error=str(exc))
            return None
        spend.add(written.usage, written.attempts, model=written.model)
        return clean_text(written.reply)

    def holistic(self, persona: str, card: ToolCard, rerun_reason: str | None = None) -> Take:
        """Ask one persona. A persona that keeps failing abstains with the error.

        With SHIPSKIP_SAMPLES=k above 1, k takes are drawn and the median-score one is kept,
        with the spread and the share of draws whose verdict differed.
        When the card holds text aimed at the panel, the persona is asked again without it;
        a score that moves by SHIPSKIP_FLAG_DELTA or a verdict that flips marks the take suspicious.
        """
        k = max(1, self.settings.samples)
        draws = [self.draw(persona, card, rerun_reason) for _ in range(k)]
        take = consensus(draws) if k > 1 else draws[0]
        if take.text:
            # A reply holding instructions to the panel is flagged, and so not counted.
            take = take.model_copy(
                update={
                    "grounded": grounding(take.text, card),
                    "suspicious": take.suspicious or gives_orders(take.text),
                }
            )
        clean = without_suspicious(card)
        if clean is None or take.error:
            return take
        check = self.draw(persona, clean, rerun_reason)
        return take.model_copy(
            update={
                "clean_score": check.score,
                "suspicious": bool(check.error)
                or take.suspicious
                or score_jumped(
                    take.score, check.score, take.verdict, check.verdict, self.settings.flag_delta
                ),
                "attempts": take.attempts + check.attempts,
                "usage": take.usage + check.usage,
            }
        )

    def draw(self, persona: str, card: ToolCard, rerun_reason: str | None = None) -> Take:
        """One holistic draw from one persona, with no checks on top."""
        client = self.clients[persona]
        meta = self._meta(persona, rerun_reason)
        messages = render_messages(self.prompts, persona, card)
        try:
            done = client.complete(
                messages,
                temperature=meta["temperature"],
                max_tokens=self.settings.max_tokens,
                lead=card.name,
            )
        except LLMFailure as exc:
            return Take.abstention(
                persona, why="the model gave no valid take", error=str(exc),
                attempts=exc.attempts, usage=exc.usage, **meta,
            )  # fmt: skip
        meta["model"] = done.model
        return Take.from_reply(
            persona, done.reply, attempts=done.attempts, usage=done.usage,
            latency_ms=done.latency_ms, **meta,
        )  # fmt: skip


@contextmanager
def open_panel(
    settings: Settings,
    prompts: PromptSet,
    personas: list[str] | None = None,
    model_override: str | None = None,
    persona_slot: SlotFactory | None = None,
    require: bool = True,
    budget: Budget | None = None,
) -> Iterator[Panel]:
    """Build a client per persona; start the embedded server only if some persona needs it.

    The panel's clients share one bound on calls in flight, SHIPSKIP_LLM_CONCURRENCY, however
    many tools the panel serves at once; `persona_slot` adds a bound shared across processes.
    `require=False` (calibrating, evaluating) lets an uncalibrated model through whatever
    SHIPSKIP_REQUIRE_CALIBRATION says."""
    names = personas or list(prompts.personas)
    # One governor for every client: 429s, 5xx and rate-limit headers slow all personas at once.
    in_flight = RateGovernor(max(1, settings.llm_concurrency))
    redactor = redactor_for(settings)
    # One breaker per provider (base URL and model) for as long as these panel: personas that
    # share a provider give up on it together.
    breakers: dict[tuple[str, str], CircuitBreaker] = {}
    stop = threading.Event()
    keys = model_keys(settings, prompts, names, model_override, require=require)
    with ExitStack() as stack:
        embedded_url = None
        if settings.needs_embedded(names):
            embedded_url = stack.enter_context(
                embedded_server(
                    n_ctx=settings.embedded_ctx,
                    threads=settings.embedded_threads,
                    startup_timeout_s=settings.embedded_startup_timeout_s,
                    model_file=settings.embedded_model_path,
                )
            )
        clients = {}
        for name in names:
            prov = settings.provider_for(name)
            local = prov.base_url is None
            base_url: str = embedded_url if local else prov.base_url  # type: ignore[assignment]
            model = asked_model(settings, name, model_override)
            breaker = breakers.setdefault(
                (base_url, model),
                CircuitBreaker(base_url, model, settings.breaker_failures, settings.provider_deadline_s()),
            )
            client = LLMClient(
                base_url=base_url,
                api_key=prov.api_key,
                model=model,
                mode=prov.response_format or ("json_object" if local else "json_schema"),
                timeout_s=settings.timeout_s,
                max_attempts=settings.max_attempts,
                max_retry_wait_s=settings.max_retry_wait_s,
                limiter=in_flight,
                redactor=redactor,
                breaker=breaker,
                stop=stop,
                top_logprobs=settings.top_logprobs,
            )
            stack.callback(client.close)
            clients[name] = client
        # Wide enough for every persona of every tool a file's ingest keeps in flight (twice what
        # fills the calls, `usecases.tools_in_flight`: at most 2 * (concurrency + personas - 1)),
        # so the slots, not the threads, bound how many are asked; at concurrency + personas, 21
        # of an ingest's 40 personas ran and the rest queued behind them. A lake keeps more tools
        # in flight, so that its groups fill; their personas beyond the pool wait for a thread,
        # still more than twice the slots. Threads start only as personas are submitted.
        pool = stack.enter_context(
            ThreadPoolExecutor(
                max_workers=2 * (settings.llm_concurrency + len(names)), thread_name_prefix="seat"
            )
        )
        # Leaving early (an exception, SIGTERM) stops the personas in flight before the pool waits
        # for them: each ends at its next call instead of asking the rest of its checklist.
        stack.callback(stop.set)
        yield Panel(
            prompts=prompts, clients=clients, settings=settings, persona_slot=persona_slot or nullcontext,
            pool=pool, stop=stop, keys=keys, budget=budget,
        )  # fmt: skip


def asked_model(settings: Settings, persona: str, model_override: str | None = None) -> str:
    """The model a persona's requests name: the override, the persona's own or the panel's, else the
    embedded model (no base URL) or SHIPSKIP_HOSTED_MODEL (`provider_for` fills that in)."""
    prov = settings.provider_for(persona)
    return model_override or prov.model or embedded_model_name(settings.embedded_model_path)


def model_keys(
    settings: Settings,
    prompts: PromptSet,
    personas: list[str],
    model_override: str | None = None,
    require: bool = True,
) -> dict[str, ModelKey]:
    """Each persona's model as calibrations know it: the model asked for, with the GGUF file's
    digest where the embedded server serves it. With SHIPSKIP_REQUIRE_CALIBRATION, a persona whose
    model has no fitted calibration for its prompt version stops everything here, before any
    request (UncalibratedModel)."""
    keys = {}
    for name in personas:
        model = asked_model(settings, name, model_override)
        if settings.provider_for(name).base_url is None:
            file = settings.embedded_model_path
            gguf = file if file is not None and Path(file).is_file() else (None if file else model_path())
            keys[name] = ModelKey(model, calibrations.gguf_digest(gguf) if gguf else None)
        else:
            keys[name] = ModelKey(model)
        version = prompts.personas[name].version
        if (
            require
            and settings.require_calibration
            and not calibrations.find_fitted(settings.calibrations_dir, keys[name], name, version)
        ):
            raise UncalibratedModel(str(keys[name]), name, version)
    return keys
