"""The one seam between shipskip and any OpenAI-compatible provider.

The openai SDK's own retries are off: tenacity decides what to retry and how long to wait,
so that Retry-After is honoured and invalid output can be fed back to the model.
"""

from __future__ import annotations

import functools
import json
import math
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

# openai 3 speaks HTTP through httpx2; its transport and exceptions must come from there.
import httpx2 as httpx
import openai
from pydantic import SecretStr, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .errors import InvalidOutput, LLMFailure, ProviderDown, ProviderRejected, RejectedText, Stopped
from .models import (
    MAX_TAKE_CHARS,
    REPLY_ADAPTER,
    SHIP_THRESHOLD,
    AbstainReply,
    ShipReply,
    SkipReply,
    Usage,
    pattern_literal,
    reply_json_schema,
    take_body,
)
from .redaction import Redactor

ResponseMode = Literal["json_schema", "json_object"]
Reply = ShipReply | SkipReply | AbstainReply
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


class CircuitBreaker:
    """One provider (base URL and model) for one run, shared by every seat that uses it.

    Retrying each question on its own made a dead provider cost minutes a tool (every question
    timed out MAX_ATTEMPTS times). The breaker counts calls that got no answer at all; after
    `max_failures` in a row, or once two or more failed calls in a row have spent `deadline_s`
    between them waiting on the provider, it opens, and every call after that fails at once
    with ProviderDown, without a request. Any answer ends the streak. It stays open for the
    run: the next run starts with a closed one.

    The time counted is the failed calls' own, not the wall clock between them: on a busy
    machine two 503s a few seconds apart say nothing about a deadline. One slow call alone
    never opens it. Calls one at a time against a dead provider stop after the deadline plus
    one call; calls side by side reach `max_failures` first.
    """

    def __init__(self, base_url: str, model: str, max_failures: int, deadline_s: float) -> None:
        self.base_url, self.model = base_url, model
        self.max_failures, self.deadline_s = max(1, max_failures), deadline_s
        self._lock = threading.Lock()
        self.failures = 0
        self._failing_s = 0.0  # time the failed calls of the streak spent waiting
        self.is_open = False
        self._last_error = ""

    def _down(self) -> ProviderDown:
        return ProviderDown.of(self.base_url, self.model, self.failures, self._failing_s, self._last_error)

    def before_call(self) -> float:
        """The time the call is sent; raises ProviderDown instead when the breaker is open."""
        with self._lock:
            if self.is_open:
                raise self._down()
            return time.monotonic()

    def failed(self, sent_at: float, error: str) -> None:
        with self._lock:
            self.failures += 1
            self._failing_s += time.monotonic() - sent_at
            self._last_error = error
            too_long = self.failures >= 2 and self._failing_s >= self.deadline_s
            if self.failures >= self.max_failures or too_long:
                self.is_open = True

    def answered(self) -> None:
        with self._lock:
            self.failures, self._failing_s = 0, 0.0

    def check(self) -> None:
        """Raise ProviderDown if the breaker is open."""
        with self._lock:
            if self.is_open:
                raise self._down()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def header_seconds(raw: str | None) -> float | None:
    """A duration as rate-limit headers write it: seconds ("1.5"), or "6m0s", "1s", "20ms"."""
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _header_int(headers: Any, name: str) -> int | None:
    raw = headers.get(name) if headers is not None else None
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Ticket:
    """One call let through the governor: its place in the order calls were sent, and the
    congestion epoch it was sent in."""

    seq: int
    epoch: int


class RateGovernor:
    """How many calls may be in flight to a provider right now, shared by every client (and so
    every seat and tool) of a process: the one place rate limits are obeyed.

    - Concurrency adapts within SHIPSKIP_LLM_CONCURRENCY (AIMD, as llm-d's batch gateway does):
      a 429 or 5xx halves it, and a clean window of as many answers as the limit adds one. Only a
      call sent since the last cut can cut again, so one burst of 429s halves once, not to 1.
    - A 429's `Retry-After` (or `retry-after-ms`) holds every call of the process, not only the
      one that got it.
    - `x-ratelimit-remaining-requests` with `-reset-requests` is read as what the provider still
      allows in its window, less the calls sent after the answered one (the provider had not
      counted those yet); at 0 no call starts until the window resets.
      `x-ratelimit-remaining-tokens` with `-reset-tokens` holds calls the same way once fewer
      tokens are left than the calls sent since would likely use (the mean call so far).
    """

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max(1, max_limit)
        self.limit = self.max_limit
        self.in_flight = 0
        self._cond = threading.Condition()
        self._clean = 0
        self._epoch = 0
        self._sent = 0
        self._not_before = 0.0  # monotonic time before which no call starts
        self._allowance: int | None = None  # calls the provider still allows in its window
        self._window_ends = 0.0
        self._tokens, self._calls_with_tokens = 0, 0
        # What happened, for benchmarks and tests.
        self.throttled = self.answered = self.cuts = self.held = 0

    def _ready(self, now: float) -> float:
        """0 when a call may start now; else how long to wait at most before looking again."""
        if self._allowance is not None and now >= self._window_ends:
            self._allowance = None  # a new window: unknown until the next answer says
        if now < self._not_before:
            return self._not_before - now
        if self._allowance is not None and self._allowance <= 0:
            return self._window_ends - now
        if self.in_flight >= self.limit:
            return 0.5  # woken by a release; the timeout only bounds a missed wake-up
        return 0.0

    def acquire(self, stop: threading.Event) -> Ticket:
        with self._cond:
            waited = False
            while True:
                if stop.is_set():
                    raise Stopped()
                pause = self._ready(time.monotonic())
                if pause <= 0:
                    break
                if not waited and self.in_flight < self.limit:
                    self.held += 1  # held by the provider's limits, not by our own concurrency
                waited = True
                self._cond.wait(min(pause, 0.5))
            self.in_flight += 1
            ticket = Ticket(self._sent, self._epoch)
            self._sent += 1
            if self._allowance is not None:
                self._allowance -= 1
            return ticket

    def release(
        self, ticket: Ticket, *, ok: bool = False, congested: bool = False, headers: Any = None,
        retry_after_s: float | None = None, tokens: int = 0,
    ) -> None:  # fmt: skip
        """After a call: `ok` an answer, `congested` a 429 or 5xx (or neither: a 4xx, no answer)."""
        now = time.monotonic()
        with self._cond:
            self.in_flight -= 1
            if congested:
                self.throttled += 1
                self._clean = 0
                if ticket.epoch == self._epoch:
                    self.limit = max(1, self.limit // 2)
                    self._epoch, self.cuts = self._epoch + 1, self.cuts + 1
                if retry_after_s:
                    self._not_before = max(self._not_before, now + retry_after_s)
            elif ok:
                self.answered += 1
                self._clean += 1
                if self._clean >= self.limit:
                    self.limit, self._clean = min(self.max_limit, self.limit + 1), 0
            if tokens:
                self._tokens, self._calls_with_tokens = self._tokens + tokens, self._calls_with_tokens + 1
            self._read_headers(ticket, headers, now)
            self._cond.notify_all()

    def _read_headers(self, ticket: Ticket, headers: Any, now: float) -> None:
        if headers is None:
            return
        later = self._sent - ticket.seq - 1  # sent after this call: not yet counted in its answer
        remaining = _header_int(headers, "x-ratelimit-remaining-requests")
        reset = header_seconds(headers.get("x-ratelimit-reset-requests"))
        if remaining is not None and reset is not None:
            allowance, ends = remaining - later, now + reset
            if self._allowance is None or ends > self._window_ends + 0.05:
                self._allowance, self._window_ends = allowance, ends  # a newer window
            else:
                self._allowance = min(self._allowance, allowance)
        tokens_left = _header_int(headers, "x-ratelimit-remaining-tokens")
        tokens_reset = header_seconds(headers.get("x-ratelimit-reset-tokens"))
        if tokens_left is not None and tokens_reset is not None and self._calls_with_tokens:
            per_call = self._tokens / self._calls_with_tokens
            if tokens_left < per_call * (later + 1):
                self._not_before = max(self._not_before, now + tokens_reset)


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


_YES = frozenset({"yes", "y", "true"})
_NO = frozenset({"no", "n", "false"})


def _word(token: str) -> str:
    return token.strip().strip(".,!:;\"'*").lower()


_SCORE_KEY = re.compile(r'"score"\s*:\s*$')


def expected_score(choice: Any) -> float | None:
    """The score's leading digit as an expectation over its top alternatives, the rest as sampled.

    Reads the tokens of the reply in order; at the first digit after `"score":`, every digit
    among the top log-probabilities is weighed by its probability. None without log-probabilities.
    """
    lp = getattr(choice, "logprobs", None)
    tokens = lp.content if lp and lp.content else None
    if not tokens:
        return None
    text = ""
    for k, tok in enumerate(tokens):
        if _SCORE_KEY.search(text) and tok.token.strip().isdigit():
            digits = tok.token.strip()
            rest = ""
            for nxt in tokens[k + 1 :]:
                if not nxt.token.isdigit():
                    break
                rest += nxt.token
            width = len(digits) + len(rest)
            alts = [(a.token.strip(), math.exp(a.logprob)) for a in tok.top_logprobs or []]
            alts = [(d, p) for d, p in alts if d.isdigit() and len(d) == len(digits)]
            if width > 3 or not alts:
                return None
            total = sum(p for _, p in alts)
            scale = 10 ** len(rest)
            return sum(int(d) * scale * p for d, p in alts) / total + (int(rest) if rest else 0)
        text += tok.token
    return None


def _parse_yes_no(choice: Any) -> tuple[float, str]:
    """(P(yes), source) from one choice; P(yes) is renormalised over the yes and no tokens."""
    content = getattr(choice, "logprobs", None)
    first = content.content[0] if content and content.content else None
    if first is not None and first.top_logprobs:
        p_yes = sum(math.exp(t.logprob) for t in first.top_logprobs if _word(t.token) in _YES)
        p_no = sum(math.exp(t.logprob) for t in first.top_logprobs if _word(t.token) in _NO)
        if p_yes + p_no > 0:
            return round(p_yes / (p_yes + p_no), 4), "logprobs"
    text = (choice.message.content or "").strip()
    word = _word(text.split()[0]) if text.split() else ""
    if word in _YES:
        return 1.0, "sampled"
    if word in _NO:
        return 0.0, "sampled"
    raise InvalidOutput(f"expected Yes or No, got {text[:40]!r}", text)


def _retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: the exponential back-off stands in


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, request: httpx.Request, deadline: float, total_s: float):
        self._inner, self._request, self._deadline, self._total_s = inner, request, deadline, total_s

    def __iter__(self) -> Any:
        for chunk in self._inner:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout(f"no whole reply within {self._total_s:g} s", request=self._request)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client in the process. Building one loads the CA bundle: 25 ms
    of CPU per client, five per panel, while the embedded server starts beside it."""
    return httpx.create_ssl_context()


class DeadlineTransport(httpx.BaseTransport):
    """Gives each request a total deadline.

    httpx's timeouts apply to each read, so a body trickled one byte per second under the
    read timeout would never time out; this transport stops it once the whole call is late.
    """

    def __init__(self, total_s: float) -> None:
        self._inner, self._total_s = httpx.HTTPTransport(verify=_tls_context()), total_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self._total_s
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _DeadlineStream(response.stream, request, deadline, self._total_s)
        return response

    def close(self) -> None:
        self._inner.close()


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
        schema = reply_json_schema(lead)
        if self.mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "take", "schema": schema}}

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, InvalidOutput) or (self.breaker is not None and self.breaker.is_open):
            return 0.0  # an open breaker fails the next attempt at once: no point waiting for it
        hinted = _retry_after_seconds(exc) if exc else None
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
                raw = self._client.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=state.messages,  # type: ignore[arg-type]
                    **kwargs,
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
                    congested=True, headers=exc.response.headers, retry_after_s=_retry_after_seconds(exc)
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

    def _parse_reply(self, choice: Any) -> Reply:
        content = (choice.message.content or "").strip()
        if not content:
            raise InvalidOutput("the reply was empty", "")
        try:
            reply = REPLY_ADAPTER.validate_python(json.loads(content))
            if not isinstance(reply, AbstainReply):
                expected = expected_score(choice)
                if expected is not None:
                    # G-Eval: the probability-weighted score, kept inside its verdict's range.
                    low, high = (SHIP_THRESHOLD, 100) if reply.verdict == "ship" else (0, SHIP_THRESHOLD - 1)
                    reply = reply.model_copy(update={"score": max(low, min(high, round(expected)))})
            return reply
        except json.JSONDecodeError as exc:
            cut = " (cut off at max_tokens)" if choice.finish_reason == "length" else ""
            raise InvalidOutput(f"not valid JSON{cut}: {exc.msg}", content) from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'reply'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise InvalidOutput(f"wrong shape: {problems}", content) from exc

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
        state = _State(messages=list(messages), model=self.model)
        started = time.perf_counter()
        reply = self._run(
            state,
            lambda: self._request(
                state, self._parse_reply, temperature=temperature, max_tokens=max_tokens,
                response_format=self._response_format(lead), logprobs=True,
            ),
        )  # fmt: skip
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
            lambda: self._request(
                state, _parse_yes_no, logprobs=True, temperature=0.0, max_tokens=max_tokens
            ),
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
        state = _State(messages=list(messages), model=self.model)
        started = time.perf_counter()

        def parse(choice: Any) -> str:
            content = (choice.message.content or "").strip()
            try:
                data = json.loads(content)
                text = data["take"] if isinstance(data, dict) else None
            except json.JSONDecodeError as exc:
                cut = " (cut off at max_tokens)" if choice.finish_reason == "length" else ""
                raise InvalidOutput(f"not valid JSON{cut}: {exc.msg}", content) from exc
            except KeyError:
                text = None
            if not isinstance(text, str):
                raise InvalidOutput('wrong shape: expected {"take": "..."}', content)
            problem = check(text)
            if problem:
                raise RejectedText(problem, content)
            return text

        text = self._run(
            state,
            lambda: self._request(
                state, parse, temperature=temperature, max_tokens=max_tokens,
                response_format=self._take_format(opening),
            ),
        )  # fmt: skip
        return state.completion(text, started)

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
        if self.mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "take", "schema": schema, "strict": True}}

    def close(self) -> None:
        self._client.close()
