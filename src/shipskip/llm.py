"""The one seam between shipskip and any OpenAI-compatible provider.

The openai SDK's own retries are off: tenacity decides what to retry and how long to wait,
so that Retry-After is honoured and invalid output can be fed back to the model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

# openai 3 speaks HTTP through httpx2; its transport and exceptions must come from there.
import httpx2 as httpx
import openai
from openai.types.chat import ChatCompletion
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .errors import InvalidOutput, LLMFailure, ProviderRejected, RejectedText, Stopped
from .models import (
    MAX_TAKE_CHARS,
    Usage,
    pattern_literal,
    reply_json_schema,
    take_body,
)
from .rates import CircuitBreaker, RateGovernor, retry_after_seconds
from .redaction import Redactor
from .replies import parse_reply, parse_yes_no, response_format, take_parser
from .transport import DeadlineTransport

ResponseMode = Literal["json_schema", "json_object"]
T = TypeVar("T")

TRANSIENT = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


# Status codes that mean the configuration is wrong rather than the request.
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)

# Calls that count against a provider's circuit breaker: it did not answer at all. A 429 is
# an answer (the provider is up and asks us to wait), and so is invalid output.
UNANSWERED = (openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)


# What `with_raw_response.create` asks of the client: the response whole (headers included),
# parsed on demand, and the bearer key as create sends it.
_RAW_OPTIONS: Any = {"headers": {"X-Stainless-Raw-Response": "true"}, "security": {"bearer_auth": True}}


@dataclass
class Completion:
    reply: Any
    usage: Usage
    attempts: int
    latency_ms: int
    model: str


@dataclass
class _State:
    """What one take's attempts share: the feedback so far and the tokens spent."""

    messages: list[dict[str, str]]
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    # Feed invalid output back to the model? Not for one-token answers.
    reask: bool = True

    def completion(self, reply: Any, started: float) -> Completion:
        return Completion(
            reply=reply,
            usage=self.usage,
            attempts=self.attempts,
            latency_ms=int((time.perf_counter() - started) * 1000),
            model=self.model,
        )


@dataclass
class Answer:
    """A Yes/No answer: P(yes), and whether it came from log-probabilities or the sampled text."""

    p_yes: float
    source: str
    usage: Usage
    attempts: int
    model: str


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
        limiter: RateGovernor | None = None,
        redactor: Redactor | None = None,
        breaker: CircuitBreaker | None = None,
        stop: threading.Event | None = None,
        top_logprobs: int = 10,
    ) -> None:
        self.model, self.mode = model, mode
        self.top_logprobs = top_logprobs
        # Set when the process is stopping: no call starts after it, and a retry's wait ends.
        self._stop = stop or threading.Event()
        self.max_attempts, self.max_retry_wait_s = max_attempts, max_retry_wait_s
        self._secret = api_key.get_secret_value() if api_key else ""
        # Every secret the settings hold when the panel passes one; this client's key at least.
        self._redactor = redactor if redactor is not None else Redactor([self._secret])
        self.breaker = breaker
        self._limiter = limiter or RateGovernor(64)
        self._logprobs = True
        self._client = openai.OpenAI(
            base_url=base_url,
            # Local servers need no key, but the SDK insists on a non-empty one.
            api_key=self._secret or "no-key",
            max_retries=0,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            http_client=openai.DefaultHttpxClient(transport=DeadlineTransport(timeout_s)),
        )

    def _response_format(self, lead: str | None) -> dict:
        return response_format(self.mode, reply_json_schema(lead))

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, InvalidOutput) or (self.breaker is not None and self.breaker.is_open):
            return 0.0  # an open breaker fails the next attempt at once: no point waiting for it
        hinted = retry_after_seconds(exc) if exc else None
        if hinted is not None:
            return min(hinted, self.max_retry_wait_s)
        return min(wait_exponential_jitter(initial=0.5, max=8)(rs), self.max_retry_wait_s)

    def _request(
        self, state: _State, parse: Callable[[Any], T], *, logprobs: bool = False, **kwargs: Any
    ) -> T:
        """One attempt: send the conversation so far, count the tokens, parse or raise.

        With `logprobs`, top log-probabilities are asked for; a provider that refuses the
        parameter is asked again at once without it, and plainly from then on.
        """
        if logprobs and self._logprobs:
            try:
                return self._send(state, parse, logprobs=True, top_logprobs=self.top_logprobs, **kwargs)
            except openai.BadRequestError as exc:
                if "logprob" not in str(exc).lower():
                    raise
                self._logprobs = False
        return self._send(state, parse, **kwargs)

    def _send(self, state: _State, parse: Callable[[Any], T], **kwargs: Any) -> T:
        if self._stop.is_set():
            raise Stopped()
        ticket = self._limiter.acquire(self._stop)  # raises Stopped if set while it waited
        outcome: dict[str, Any] = {}
        try:
            # Checked once a slot is held: a call that waited for one while the breaker opened
            # is not sent.
            sent = self.breaker.before_call() if self.breaker is not None else 0.0
            state.attempts += 1
            try:
                # The client's documented low-level `post`, not `chat.completions.create`: the
                # body is already plain JSON, and create's walk of it against the SDK's
                # TypedDicts (`maybe_transform`) was a third of the CPU a question cost the
                # client, spent while the call held its slot.
                raw: Any = self._client.post(
                    "/chat/completions",
                    cast_to=ChatCompletion,
                    body={"model": self.model, "messages": state.messages, **kwargs},
                    options=_RAW_OPTIONS,
                )
                outcome["headers"] = raw.headers
                resp = raw.parse()
            except json.JSONDecodeError as exc:
                # A 200 whose body is not JSON at all (an HTML page from a proxy, say).
                self._answered()
                outcome["ok"] = True
                raise InvalidOutput("the reply was not JSON", self.redact(exc.doc[:200])) from None
            except UNANSWERED as exc:
                if self.breaker is not None:
                    self.breaker.failed(sent, self._one_line(exc, 200))
                outcome["congested"] = isinstance(exc, openai.InternalServerError)
                outcome["headers"] = getattr(getattr(exc, "response", None), "headers", None)
                raise
            except openai.RateLimitError as exc:
                # Up, but asking us to wait: neither an answer nor a failure for the breaker;
                # the governor slows every call of the process down.
                outcome.update(
                    congested=True, headers=exc.response.headers, retry_after_s=retry_after_seconds(exc)
                )
                raise
            except openai.APIStatusError as exc:
                self._answered()  # a 4xx is an answer: the provider is up
                outcome["headers"] = exc.response.headers
                raise
            self._answered()
            outcome["ok"] = True
            usage = getattr(resp, "usage", None)
            if usage is not None:
                outcome["tokens"] = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        finally:
            self._limiter.release(ticket, **outcome)
        if not hasattr(resp, "choices"):
            # A 200 whose body is not a chat completion (an HTML page, plain text).
            raise InvalidOutput("the reply was not a chat completion", self.redact(str(resp)[:200]))
        if resp.usage is not None:
            details = resp.usage.prompt_tokens_details
            state.usage = state.usage + Usage(
                prompt_tokens=resp.usage.prompt_tokens or 0,
                completion_tokens=resp.usage.completion_tokens or 0,
                cached_tokens=(details.cached_tokens or 0) if details else 0,
            )
        self._refuse_secrets(resp)
        if resp.model:
            state.model = resp.model
        if not resp.choices:
            raise InvalidOutput("the reply had no choices", "")
        if getattr(resp.choices[0].message, "refusal", None):
            raise InvalidOutput(f"the model refused: {resp.choices[0].message.refusal}", "")
        return parse(resp.choices[0])

    def _feedback(self, state: _State, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, InvalidOutput) and state.reask:
            # Show the model its own answer and what was wrong with it, once per failure.
            state.messages = [
                *state.messages,
                {"role": "assistant", "content": self.redact(exc.content[:2000]) or "(empty)"},
                {
                    "role": "user",
                    "content": f"That answer was rejected: {exc}. "
                    "Reply again in the format asked for, following the rules.",
                },
            ]

    def redact(self, text: str) -> str:
        """The text with every secret, and every run of SECRET_MIN_RUN characters of one, masked."""
        return self._redactor.redact(text)

    def _one_line(self, exc: BaseException, limit: int) -> str:
        # Mask before cutting: a cut could leave part of a secret that no longer matches whole.
        return self.redact(f"{type(exc).__name__}: {exc}").splitlines()[0][:limit]

    def _answered(self) -> None:
        if self.breaker is not None:
            self.breaker.answered()

    def _refuse_secrets(self, resp: Any) -> None:
        """A reply that holds a secret (the key, whole or a run of it) is invalid output: asked
        again, and the model is shown its answer masked. Nothing of it is kept."""
        message = resp.choices[0].message if resp.choices else None
        parts = [resp.model, getattr(message, "content", None), getattr(message, "refusal", None)]
        for part in parts:
            if isinstance(part, str) and self._redactor.holds(part):
                content = getattr(message, "content", None) or ""
                raise InvalidOutput("the reply held a secret (masked here)", self.redact(content))

    def check_provider(self) -> None:
        """Raise ProviderDown if this client's provider has been given up on in this run."""
        if self.breaker is not None:
            self.breaker.check()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _run(self, state: _State, attempt: Callable[[], T]) -> T:
        """Retry transient errors and invalid output; after the last attempt raise LLMFailure."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((*TRANSIENT, InvalidOutput)),
            before_sleep=lambda rs: self._feedback(state, rs),
            # A wait between attempts ends when the process stops; the next attempt then stops.
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except FATAL as exc:
            what = self.redact(f"{exc.status_code} {type(exc).__name__}: {exc.message}").splitlines()[0][:300]
            raise ProviderRejected(
                f"the provider at {self._client.base_url} refused the request ({what}); "
                "check the base URL, the API key and the model name"
            ) from None
        except (*TRANSIENT, InvalidOutput, openai.APIError) as exc:
            # Mask the key before cutting: a cut could leave part of it that no longer matches.
            raise LLMFailure(
                self._one_line(exc, 500),
                state.attempts,
                state.usage,
                rejected=self.redact(str(exc)) if isinstance(exc, RejectedText) else None,
            ) from None

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        lead: str | None = None,
    ) -> Completion:
        """The holistic reply: verdict, score and take in one JSON object."""
        return self._json_reply(
            messages, parse_reply, temperature=temperature, max_tokens=max_tokens,
            response_format=self._response_format(lead), logprobs=True,
        )  # fmt: skip

    def _json_reply(
        self, messages: list[dict[str, str]], parse: Callable[[Any], Any], **kwargs: Any
    ) -> Completion:
        """One JSON reply read by `parse`, invalid ones fed back and asked again."""
        state = _State(messages=list(messages), model=self.model)
        started = time.perf_counter()
        reply = self._run(state, lambda: self._request(state, parse, **kwargs))
        return state.completion(reply, started)

    def yes_probability(self, messages: list[dict[str, str]], max_tokens: int = 1) -> Answer:
        """P(yes) for a Yes/No question, from the first token's log-probabilities.

        Where the provider returns no log-probabilities (or refuses the parameter), the sampled
        answer stands in: 1.0 for yes, 0.0 for no. Anything else is invalid output, retried
        without feedback, since a one-token answer has no room to explain itself.
        """
        state = _State(messages=list(messages), model=self.model, reask=False)

        p, source = self._run(
            state,
            lambda: self._request(state, parse_yes_no, logprobs=True, temperature=0.0, max_tokens=max_tokens),
        )
        return Answer(p_yes=p, source=source, usage=state.usage, attempts=state.attempts, model=state.model)

    def write_take(
        self,
        messages: list[dict[str, str]],
        check: Callable[[str], str | None],
        *,
        temperature: float,
        max_tokens: int,
        opening: str | None = None,
    ) -> Completion:
        """A take as {"take": ...}; `check` names what is wrong with it, and the model is asked again."""
        return self._json_reply(
            messages, take_parser(check), temperature=temperature, max_tokens=max_tokens,
            response_format=self._take_format(opening),
        )  # fmt: skip

    def _take_format(self, opening: str | None) -> dict:
        """A take of 40 to MAX_TAKE_CHARS characters; with `opening`, it must start with those words."""
        take: dict[str, Any] = {"type": "string", "minLength": 40, "maxLength": MAX_TAKE_CHARS}
        literal = pattern_literal(opening) if opening else None
        if opening and literal:
            take["pattern"] = "^" + literal + " " + take_body(20, MAX_TAKE_CHARS - len(opening) - 1)
        schema = {
            "type": "object",
            "properties": {"take": take},
            "required": ["take"],
            "additionalProperties": False,
        }
        return response_format(self.mode, schema, strict=True)

    def close(self) -> None:
        self._client.close()
