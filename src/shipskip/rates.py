"""Pacing one provider: the rate governor that every call of the process shares (AIMD on the
provider's rate-limit headers and 429s), the circuit breaker that gives up on a provider that
does not answer, and the wait a provider's headers ask for."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .errors import ProviderDown, Stopped


class CircuitBreaker:
    """One provider (base URL and model) for one run, shared by every persona that uses it.

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


# Answers whose windows end this close together are one window.
_SAME_WINDOW_S = 0.05
# How long after the estimated end of a window calls start again: covers a request's way from
# the governor to the provider (building it, the GIL, the socket), a few ms on a busy machine.
# Too short and the calls held for the new window reach the old one: a burst of 429s and a cut.
_WINDOW_MARGIN_S = 0.02


@dataclass(frozen=True)
class Ticket:
    """One call let through the governor: its place in the order calls were sent, the
    congestion epoch it was sent in, and when it was let through (monotonic)."""

    seq: int
    epoch: int
    at: float = 0.0


class RateGovernor:
    """How many calls may be in flight to a provider right now, shared by every client (and so
    every persona and tool) of a process: the one place rate limits are obeyed.

    - Concurrency adapts within SHIPSKIP_LLM_CONCURRENCY (AIMD, as llm-d's batch gateway does):
      a 429 or 5xx halves it, and a clean window of as many answers as the limit adds one. Only a
      call sent since the last cut can cut again, so one burst of 429s halves once, not to 1.
    - A 429's `Retry-After` (or `retry-after-ms`) holds every call of the process, not only the
      one that got it.
    - `x-ratelimit-remaining-requests` with `-reset-requests` is read as what the provider still
      allows in its window, less the calls the provider had not counted yet; at 0 no call starts
      until the window resets. Without `x-ratelimit-limit-requests` every call sent after the
      answered one counts as not counted (strict: calls reach the provider in any order); with
      it, a later call whose answer showed more remaining reached it first, and the limit less
      the calls this process sent in the window bounds what is left too. The reset is
      counted from when the call was sent, not answered: a provider counts a request as it
      arrives and dates its headers then, so counting from the answer held every window a
      call's latency too long (a fifth of each second at 200 ms).
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
        self._sent_ends = 0.0  # the latest `sent + reset` of the window's answers
        # Calls sent in the provider's window as far as known, and after its estimated end.
        self._window_sent, self._next_sent = 0, 0
        # (place sent, remaining count) of the window's latest answers
        self._window_answers: deque[tuple[int, int]] = deque(maxlen=256)
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
            now = time.monotonic()
            ticket = Ticket(self._sent, self._epoch, now)
            self._sent += 1
            # Counted against the next window from the window's early estimated end (a call sent
            # just before the true end counted twice rather than not at all).
            if now < self._sent_ends:
                self._window_sent += 1
            else:
                self._next_sent += 1
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
            limit, blocked = self.limit, self._blocked(now)
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
            if self.limit > limit or (blocked and not self._blocked(now)):
                self._cond.notify_all()  # a raised limit or a new window: every waiter looks
            else:
                # A slot was freed and nothing else let more calls start (a cut, a hold or an
                # allowance that shrank lets fewer): wake one waiter per free slot, longest
                # waiting first, rather than every persona waiting (dozens in an ingest), each
                # taking the lock and the GIL only to wait again. The allowance changes with
                # every answer that carries headers, so waking all on any change woke them all
                # on every answer. A waiter also looks again on its own within 0.5 s.
                self._cond.notify(max(1, self.limit - self.in_flight))

    def _blocked(self, now: float) -> bool:
        """Whether the provider's limits (not our own concurrency) hold every call now."""
        return now < self._not_before or (
            self._allowance is not None and self._allowance <= 0 and now < self._window_ends
        )

    def _read_headers(self, ticket: Ticket, headers: Any, now: float) -> None:
        if headers is None:
            return
        later = self._sent - ticket.seq - 1  # sent after this call: not yet counted in its answer
        remaining = _header_int(headers, "x-ratelimit-remaining-requests")
        reset = header_seconds(headers.get("x-ratelimit-reset-requests"))
        if remaining is not None and reset is not None:
            # The provider dated the reset when the call arrived: between its sending and its
            # answer. From the sending is the early end of that span; the latest of the
            # window's answers is the nearest to the truth (the one that reached it fastest),
            # and a small margin covers the rest of the way to the provider.
            sent_ends = ticket.at + reset
            if sent_ends > self._sent_ends + _SAME_WINDOW_S:  # a newer window
                self._sent_ends, self._allowance = sent_ends, None
                self._window_sent, self._next_sent = self._next_sent, 0
                self._window_answers.clear()
            elif sent_ends < self._sent_ends - _SAME_WINDOW_S:
                return self._read_token_headers(headers, later, now)  # an answer from a window over
            else:
                self._sent_ends = max(self._sent_ends, sent_ends)
            self._window_ends = self._sent_ends + _WINDOW_MARGIN_S
            limit = _header_int(headers, "x-ratelimit-limit-requests")
            if limit is None:
                # Strict: every call sent after this one counts as not yet counted.
                allowance = remaining - later
                self._allowance = allowance if self._allowance is None else min(self._allowance, allowance)
            else:
                # Calls sent side by side reach the provider in any order, so "sent after this
                # one" can count calls it had counted already: at a window's start, when a
                # concurrency's worth go at once, the lowest of those readings cut a fifth off
                # the window. A later call already answered with more remaining than this one
                # reached the provider first, so it is not subtracted, and each answer's reading
                # replaces the last. Calls sent before this one but counted after it are what
                # the limit less the calls this process sent in the window catches.
                answers = self._window_answers
                counted = sum(1 for seq, left in answers if seq > ticket.seq and left > remaining)
                self._allowance = min(remaining - (later - counted), limit - self._window_sent)
                self._window_answers.append((ticket.seq, remaining))
        self._read_token_headers(headers, later, now)

    def _read_token_headers(self, headers: Any, later: int, now: float) -> None:
        tokens_left = _header_int(headers, "x-ratelimit-remaining-tokens")
        tokens_reset = header_seconds(headers.get("x-ratelimit-reset-tokens"))
        if tokens_left is not None and tokens_reset is not None and self._calls_with_tokens:
            per_call = self._tokens / self._calls_with_tokens
            if tokens_left < per_call * (later + 1):
                self._not_before = max(self._not_before, now + tokens_reset)


def retry_after_seconds(exc: BaseException) -> float | None:
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
