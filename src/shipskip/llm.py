"""The one seam between shipskip and any OpenAI-compatible provider.

The openai SDK's own retries are off: tenacity decides what to retry and how long to wait,
so that Retry-After is honoured and invalid output can be fed back to the model.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import httpx
import openai
from pydantic import SecretStr, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .models import REPLY_ADAPTER, AbstainReply, ShipReply, SkipReply, Usage, reply_json_schema

ResponseMode = Literal["json_schema", "json_object"]
Reply = ShipReply | SkipReply | AbstainReply

TRANSIENT = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


class InvalidOutput(Exception):
    """The provider answered, but not with a reply that validates."""

    def __init__(self, message: str, content: str) -> None:
        super().__init__(message)
        self.content = content


class LLMFailure(Exception):
    """Every attempt failed; carries what was spent so the caller can still record it."""

    def __init__(self, message: str, attempts: int, usage: Usage) -> None:
        super().__init__(message)
        self.attempts, self.usage = attempts, usage


@dataclass
class Completion:
    reply: Reply
    usage: Usage
    attempts: int
    latency_ms: int
    model: str


@dataclass
class _State:
    """What one take's attempts share: the feedback so far and the tokens spent."""

    messages: list[dict[str, str]]
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0


def _retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class LLMClient:
    """One provider, one model. `complete` returns a validated reply or raises LLMFailure."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        model: str,
        mode: ResponseMode = "json_schema",
        timeout_s: float = 60.0,
        max_attempts: int = 3,
        max_retry_wait_s: float = 30.0,
        limiter: threading.Semaphore | None = None,
    ) -> None:
        self.model, self.mode = model, mode
        self.max_attempts, self.max_retry_wait_s = max_attempts, max_retry_wait_s
        self._secret = api_key.get_secret_value() if api_key else ""
        self._limiter = limiter or threading.BoundedSemaphore(64)
        self._client = openai.OpenAI(
            base_url=base_url,
            # Local servers need no key, but the SDK insists on a non-empty one.
            api_key=self._secret or "no-key",
            max_retries=0,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        )

    def _response_format(self, lead: str | None) -> dict:
        schema = reply_json_schema(lead)
        if self.mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "take", "schema": schema}}

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, InvalidOutput):
            return 0.0
        hinted = _retry_after_seconds(exc) if exc else None
        if hinted is not None:
            return min(hinted, self.max_retry_wait_s)
        return min(wait_exponential_jitter(initial=0.5, max=8)(rs), self.max_retry_wait_s)

    def _attempt(self, state: _State, temperature: float, max_tokens: int, lead: str | None) -> Reply:
        state.attempts += 1
        with self._limiter:
            resp = self._client.chat.completions.create(
                model=self.model,
                messages=state.messages,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
                response_format=self._response_format(lead),  # type: ignore[arg-type]
            )
        if resp.usage is not None:
            details = resp.usage.prompt_tokens_details
            state.usage = state.usage + Usage(
                prompt_tokens=resp.usage.prompt_tokens or 0,
                completion_tokens=resp.usage.completion_tokens or 0,
                cached_tokens=(details.cached_tokens or 0) if details else 0,
            )
        if not resp.choices:
            raise InvalidOutput("the reply had no choices", "")
        message = resp.choices[0].message
        if getattr(message, "refusal", None):
            raise InvalidOutput(f"the model refused: {message.refusal}", "")
        content = (message.content or "").strip()
        if not content:
            raise InvalidOutput("the reply was empty", "")
        try:
            return REPLY_ADAPTER.validate_python(json.loads(content))
        except json.JSONDecodeError as exc:
            cut = " (cut off at max_tokens)" if resp.choices[0].finish_reason == "length" else ""
            raise InvalidOutput(f"not valid JSON{cut}: {exc.msg}", content) from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'reply'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise InvalidOutput(f"wrong shape: {problems}", content) from exc

    def _feedback(self, state: _State, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, InvalidOutput):
            # Show the model its own answer and what was wrong with it, once per failure.
            state.messages = [
                *state.messages,
                {"role": "assistant", "content": exc.content[:2000] or "(empty)"},
                {
                    "role": "user",
                    "content": f"That answer was rejected: {exc}. "
                    "Reply again with one JSON object that follows the rules.",
                },
            ]

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        lead: str | None = None,
    ) -> Completion:
        state = _State(messages=list(messages))
        started = time.perf_counter()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((*TRANSIENT, InvalidOutput)),
            before_sleep=lambda rs: self._feedback(state, rs),
            reraise=True,
        )
        try:
            reply = retrying(self._attempt, state, temperature, max_tokens, lead)
        except (*TRANSIENT, InvalidOutput, openai.APIError) as exc:
            raise LLMFailure(
                self.redact(f"{type(exc).__name__}: {exc}".splitlines()[0][:500]),
                state.attempts,
                state.usage,
            ) from None
        return Completion(
            reply=reply,
            usage=state.usage,
            attempts=state.attempts,
            latency_ms=int((time.perf_counter() - started) * 1000),
            model=self.model,
        )

    def close(self) -> None:
        self._client.close()
