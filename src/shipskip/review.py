"""One persona's take on one tool, and the providers the panel talks to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from .embedded import EMBEDDED_MODEL, embedded_server
from .injection import score_jumped, without_suspicious
from .llm import LLMClient, LLMFailure
from .models import Take, ToolCard
from .personas import PromptSet, render_messages
from .quality import consensus, is_grounded
from .settings import Settings

# One limiter per process, shared by every client, so a big feed cannot flood a provider.
_LIMITERS: dict[int, threading.BoundedSemaphore] = {}


def _limiter(n: int) -> threading.BoundedSemaphore:
    return _LIMITERS.setdefault(n, threading.BoundedSemaphore(n))


@dataclass
class Panel:
    prompts: PromptSet
    clients: dict[str, LLMClient]
    settings: Settings

    def take(self, persona: str, card: ToolCard, reason: str | None = None) -> Take:
        """Ask one persona. A persona that keeps failing abstains with the error.

        With SHIPSKIP_SAMPLES=k above 1, k takes are drawn and the median-score one is kept,
        with the spread and the share of draws whose verdict differed.
        When the card holds text aimed at the panel, the persona is asked again without it;
        a score that moves by FLAG_DELTA or a verdict that flips marks the take suspicious.
        """
        k = max(1, self.settings.samples)
        draws = [self.ask(persona, card, reason) for _ in range(k)]
        take = consensus(draws) if k > 1 else draws[0]
        if take.take:
            take = take.model_copy(update={"grounded": is_grounded(take.take, card)})
        clean = without_suspicious(card)
        if clean is None or take.error:
            return take
        check = self.ask(persona, clean, reason)
        return take.model_copy(
            update={
                "clean_score": check.score,
                "suspicious": bool(check.error)
                or score_jumped(take.score, check.score, take.verdict, check.verdict),
                "attempts": take.attempts + check.attempts,
                "usage": take.usage + check.usage,
            }
        )

    def ask(self, persona: str, card: ToolCard, reason: str | None = None) -> Take:
        """One draw from one persona, with no checks on top."""
        client = self.clients[persona]
        p = self.prompts.personas[persona]
        meta = dict(
            model=client.model,
            prompt_version=p.version,
            prompt_hash=self.prompts.prompt_hash(persona),
            temperature=self.settings.provider_for(persona).temperature or 0.0,
            reason=reason,
        )
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
) -> Iterator[Panel]:
    """Build a client per persona; start the embedded server only if some persona needs it."""
    names = personas or list(prompts.personas)
    with ExitStack() as stack:
        embedded_url = None
        if settings.needs_embedded(names):
            embedded_url = stack.enter_context(
                embedded_server(
                    n_ctx=settings.embedded_ctx,
                    threads=settings.embedded_threads,
                    startup_timeout_s=settings.embedded_startup_timeout_s,
                )
            )
        clients = {}
        for name in names:
            prov = settings.provider_for(name)
            local = prov.base_url is None
            client = LLMClient(
                base_url=embedded_url if local else prov.base_url,  # type: ignore[arg-type]
                api_key=prov.api_key,
                model=model_override or prov.model or (EMBEDDED_MODEL if local else "gpt-4o-mini"),
                mode=prov.response_format or ("json_object" if local else "json_schema"),
                timeout_s=settings.timeout_s,
                max_attempts=settings.max_attempts,
                max_retry_wait_s=settings.max_retry_wait_s,
                limiter=_limiter(settings.llm_concurrency),
            )
            stack.callback(client.close)
            clients[name] = client
        yield Panel(prompts=prompts, clients=clients, settings=settings)
