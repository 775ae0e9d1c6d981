import json
import time

import pytest
from fakeopenai import FakeOpenAI, Reply, take_json
from pydantic import SecretStr

from shipskip.errors import LLMFailure, ShipskipError
from shipskip.llm import LLMClient
from shipskip.models import ShipReply, SkipReply

MSGS = [{"role": "system", "content": "rules"}, {"role": "user", "content": "tool"}]


def client(server: FakeOpenAI, mode: str = "json_schema", attempts: int = 3, **kw) -> LLMClient:
    return LLMClient(
        base_url=server.base_url, api_key=SecretStr("sk-test-secret"), model="fake-model",
        mode=mode, max_attempts=attempts, timeout_s=kw.pop("timeout_s", 5),
        max_retry_wait_s=kw.pop("max_retry_wait_s", 0.05), **kw,  # back-off is tested on its own
    )  # fmt: skip


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def test_valid_reply_is_parsed_with_usage(server):
    server.script = [
        Reply(
            content=take_json("skip", 35, "Demo is thin and copies the incumbents it names."), usage=(120, 40)
        )
    ]
    done = client(server).complete(MSGS, temperature=0.2, max_tokens=100)
    assert isinstance(done.reply, SkipReply) and done.reply.score == 35
    assert done.attempts == 1
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (120, 40)
    req = server.requests[0]
    assert req["response_format"]["type"] == "json_schema"
    assert req["response_format"]["json_schema"]["schema"]["anyOf"]
    assert req["_auth"] == "Bearer sk-test-secret"


def test_llama_cpp_mode_sends_json_object_with_schema(server):
    client(server, mode="json_object").complete(MSGS, temperature=0.2, max_tokens=100, lead="Demo")
    rf = server.requests[0]["response_format"]
    assert rf["type"] == "json_object" and "anyOf" in rf["schema"]
    assert rf["schema"]["anyOf"][0]["properties"]["take"]["pattern"].startswith("^Demo ")


def test_invalid_json_then_valid_feeds_the_error_back(server):
    server.script = [
        Reply(content='{"verdict": "ship", "score": 8', finish_reason="length", usage=(100, 50)),
        Reply(content=take_json("ship", 81), usage=(180, 30)),
    ]
    done = client(server).complete(MSGS, temperature=0.2, max_tokens=100)
    assert isinstance(done.reply, ShipReply) and done.attempts == 2
    assert done.usage.prompt_tokens == 280 and done.usage.completion_tokens == 80
    retry = server.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"verdict": "ship", "score": 8'}
    assert "rejected" in retry[-1]["content"] and "cut off" in retry[-1]["content"]


def test_wrong_shape_names_the_problem(server):
    server.script = [Reply(content=json.dumps({"verdict": "ship", "score": 20, "take": "x" * 50}))]
    done = client(server).complete(MSGS, temperature=0.2, max_tokens=100)
    assert done.attempts == 2
    assert "score" in server.requests[1]["messages"][-1]["content"]


def test_429_honours_retry_after(server):
    server.script = [Reply(status=429, headers={"retry-after": "1"})]
    started = time.monotonic()
    done = client(server, max_retry_wait_s=5).complete(MSGS, temperature=0.2, max_tokens=100)
    assert time.monotonic() - started >= 1.0
    assert done.attempts == 2 and len(server.requests) == 2


def test_persistent_500_fails_after_max_attempts_with_spent_tokens(server):
    server.default = Reply(status=500)
    server.script = [Reply(content="not json at all", usage=(90, 10))]
    with pytest.raises(LLMFailure) as e:
        client(server, attempts=3).complete(MSGS, temperature=0.2, max_tokens=100)
    assert e.value.attempts == 3 and len(server.requests) == 3
    assert e.value.usage.prompt_tokens == 90
    assert "sk-test-secret" not in str(e.value)


def test_timeout_is_retried(server):
    server.script = [Reply(content=take_json(), delay_s=2.0)]
    done = client(server, timeout_s=0.5).complete(MSGS, temperature=0.2, max_tokens=100)
    assert done.attempts == 2


def test_refusal_and_empty_content_are_invalid_output(server):
    server.script = [Reply(content=None, refusal="I can't help with that"), Reply(content="")]
    with pytest.raises(LLMFailure) as e:
        client(server, attempts=2).complete(MSGS, temperature=0.2, max_tokens=100)
    assert "empty" in str(e.value)
    assert "refused" in server.requests[1]["messages"][-1]["content"]


def test_client_errors_are_not_retried(server):
    server.default = Reply(status=400)
    with pytest.raises(LLMFailure):
        client(server).complete(MSGS, temperature=0.2, max_tokens=100)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_provider_that_refuses_us_stops_with_one_masked_line(server, status):
    from shipskip.errors import ProviderRejected

    server.default = Reply(status=status, body=json.dumps({"error": {"message": "bad key sk-test-secret"}}))
    with pytest.raises(ProviderRejected) as e:
        client(server).yes_probability(MSGS)
    msg = str(e.value)
    assert str(status) in msg and "sk-test-secret" not in msg and "***" in msg and "\n" not in msg
    assert len(server.requests) == 1


def _choice(tokens):
    """A chat completion choice whose content tokens carry top log-probabilities."""
    import math
    from types import SimpleNamespace as NS

    content = [
        NS(token=tok, logprob=0.0, top_logprobs=[NS(token=a, logprob=math.log(p)) for a, p in alts])
        for tok, alts in tokens
    ]
    return NS(logprobs=NS(content=content))


def test_holistic_score_is_read_as_a_probability_weighted_expectation():
    from shipskip.replies import expected_score

    toks = [('{"verdict": "ship", "score": ', []), ("7", [("7", 0.5), ("8", 0.3), ("6", 0.2)]), ("4", []),
            (', "take": "x"}', [])]  # fmt: skip
    assert expected_score(_choice(toks)) == pytest.approx(10 * (7 * 0.5 + 8 * 0.3 + 6 * 0.2) + 4)
    assert expected_score(_choice([('{"score": 5', [])])) is None
    from types import SimpleNamespace as NS

    assert expected_score(NS(logprobs=None)) is None


def test_yes_probability_reads_logprobs_and_falls_back_to_the_sampled_word(server):
    from fakeopenai import yes

    server.script = [yes(0.8), Reply(content="No."), Reply(content="Perhaps"), yes(0.3)]
    c = client(server)
    a = c.yes_probability(MSGS)
    assert a.p_yes == pytest.approx(0.8) and a.source == "logprobs"
    assert server.requests[0]["max_tokens"] == 1 and server.requests[0]["top_logprobs"] >= 2
    b = c.yes_probability(MSGS)
    assert (b.p_yes, b.source) == (0.0, "sampled")
    # Neither yes nor no: asked again, not fed back (a one-token answer cannot explain itself).
    d = c.yes_probability(MSGS)
    assert d.attempts == 2 and d.p_yes == pytest.approx(0.3)
    assert server.requests[3]["messages"] == MSGS


def test_error_text_masks_the_key_before_it_is_cut(server):
    secret = "sk-test-secret"
    server.default = Reply(status=400, body=json.dumps({"error": {"message": "x" * 430 + secret}}))
    with pytest.raises(LLMFailure) as e:
        client(server).complete(MSGS, temperature=0.2, max_tokens=100)
    assert "sk-test" not in str(e.value) and "-secret" not in str(e.value)


@pytest.mark.parametrize("body", ["<html><body>Welcome to nginx</body></html>", '"just a string"', "[]"])
def test_a_200_that_is_not_a_chat_completion_is_invalid_output_for_that_call(server, body):
    server.default = Reply(body=body)
    with pytest.raises(LLMFailure) as e:
        client(server, attempts=2).yes_probability(MSGS)
    assert e.value.attempts == 2 and len(server.requests) == 2


def test_a_provider_that_refuses_logprobs_still_gets_holistic_and_yes_no_calls(server):
    def answer(req):
        if req.get("logprobs"):
            return Reply(status=400, body=json.dumps({"error": {"message": "logprobs are not supported"}}))
        if req.get("max_tokens") == 1:
            return Reply(content="No")
        return Reply(content=take_json("ship", 72))

    server.default = answer
    c = client(server, attempts=1)
    done = c.complete(MSGS, temperature=0.2, max_tokens=100)
    assert done.reply.score == 72 and done.attempts == 2
    # Remembered: later calls ask plainly straight away.
    a = c.yes_probability(MSGS)
    assert (a.p_yes, a.source, a.attempts) == (0.0, "sampled", 1)
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, False, False]


def test_a_trickled_body_meets_the_total_deadline(server):
    # One byte every 0.3 s stays under a 1 s read timeout forever; the deadline is per call.
    server.script = [Reply(content=take_json(), trickle_s=0.3)]
    started = time.monotonic()
    done = client(server, timeout_s=1.0).complete(MSGS, temperature=0.2, max_tokens=100)
    assert done.attempts == 2
    assert time.monotonic() - started < 5


def test_a_reply_holding_the_key_whole_or_in_pieces_is_refused_and_asked_again(server):
    key = "sk-test-secret"
    server.script = [
        Reply(content=json.dumps({"take": f"Demo is fine and the key is {key}, use it well."})),
        Reply(content=json.dumps({"take": "Demo is fine and the key ends test-secret, use it well."})),
    ]
    done = client(server).write_take(MSGS, lambda text: None, temperature=0.2, max_tokens=100)
    assert done.attempts == 3 and "secret" not in done.reply
    # The model is shown what was wrong, with its answer masked.
    fed_back = json.dumps(server.requests[2]["messages"])
    assert "held a secret" in fed_back and "***" in fed_back
    assert not any(key[i : i + 8] in fed_back for i in range(len(key) - 7))


def test_a_401_that_echoes_pieces_of_the_key_gives_a_line_with_none_of_them(server):
    from shipskip.errors import ProviderRejected

    key = "sk-red-secret-1234567890abcdef"
    server.default = Reply(
        status=401, body=json.dumps({"error": {"message": f"bad key {key[:19]}..., {key[-9:]}"}})
    )
    c = LLMClient(base_url=server.base_url, api_key=SecretStr(key), model="m", max_attempts=2)
    with pytest.raises(ProviderRejected) as e:
        c.yes_probability(MSGS)
    assert not any(key[i : i + 8] in str(e.value) for i in range(len(key) - 7)), str(e.value)


def _breaker(server, failures=4, deadline_s=60.0):
    from shipskip.rates import CircuitBreaker

    return CircuitBreaker(server.base_url, "fake-model", failures, deadline_s)


def test_a_breaker_stops_asking_a_provider_that_failed_n_calls_in_a_row(server):
    from shipskip.errors import ProviderDown

    server.default = Reply(status=503)
    c = client(server, attempts=3, breaker=_breaker(server, failures=4))
    with pytest.raises(LLMFailure):
        c.yes_probability(MSGS)  # three failures: not yet
    with pytest.raises(ProviderDown) as e:
        c.yes_probability(MSGS)  # the fourth opens it; the retry is not sent
    assert len(server.requests) == 4
    with pytest.raises(ProviderDown):
        c.yes_probability(MSGS)
    assert len(server.requests) == 4, "an open breaker sends nothing"
    msg = str(e.value)
    assert "\n" not in msg and "4 calls in a row failed" in msg and "sk-test-secret" not in msg
    assert isinstance(e.value, ShipskipError) and e.value.failures == 4


def test_an_answer_closes_the_streak_and_429_or_invalid_output_do_not_count(server):
    from fakeopenai import yes

    server.script = [Reply(status=503), Reply(status=503), yes(0.9), Reply(status=503), Reply(status=429),
                     Reply(content="Perhaps"), Reply(status=503), yes(0.2)]  # fmt: skip
    breaker = _breaker(server, failures=3)
    c = client(server, attempts=5, breaker=breaker)
    assert c.yes_probability(MSGS).p_yes == pytest.approx(0.9)
    assert c.yes_probability(MSGS).p_yes == pytest.approx(0.2)
    assert not breaker.is_open and breaker.failures == 0


def test_a_breaker_opens_once_a_provider_has_failed_for_its_deadline(server):
    from shipskip.errors import ProviderDown

    server.default = Reply(content=take_json(), trickle_s=0.2)
    c = client(server, attempts=10, timeout_s=0.5, breaker=_breaker(server, failures=100, deadline_s=1.0))
    started = time.monotonic()
    with pytest.raises(ProviderDown):
        c.yes_probability(MSGS)
    # Calls sent before the deadline finish at their own timeout; none is sent after it.
    assert time.monotonic() - started < 1.0 + 2 * 0.5 + 0.5
    assert 2 <= len(server.requests) <= 3


# -- the rate governor ------------------------------------------------------------------


def test_rate_limit_header_durations_are_read():
    from shipskip.rates import header_seconds

    assert header_seconds("1s") == 1.0 and header_seconds("6m0s") == 360.0
    assert header_seconds("20ms") == pytest.approx(0.02) and header_seconds("0.5") == 0.5
    assert header_seconds("1h2m3.5s") == pytest.approx(3723.5)
    assert header_seconds("soon") is None and header_seconds(None) is None


def test_a_429_halves_the_limit_once_per_burst_and_clean_answers_add_one():
    import threading

    from shipskip.rates import RateGovernor

    gov, stop = RateGovernor(8), threading.Event()
    burst = [gov.acquire(stop) for _ in range(3)]
    for ticket in burst:  # three 429s to calls sent side by side: one cut, not three
        gov.release(ticket, congested=True)
    assert gov.limit == 4 and gov.cuts == 1 and gov.throttled == 3
    gov.release(gov.acquire(stop), congested=True)  # sent after the cut: cuts again
    assert gov.limit == 2
    for _ in range(2):  # a clean window as long as the limit adds one
        gov.release(gov.acquire(stop), ok=True)
    assert gov.limit == 3
    for _ in range(100):
        gov.release(gov.acquire(stop), ok=True)
    assert gov.limit == 8  # never above SHIPSKIP_LLM_CONCURRENCY


def test_no_call_starts_while_the_provider_says_none_are_left():
    import threading

    from shipskip.rates import RateGovernor

    gov, stop = RateGovernor(8), threading.Event()
    first, second = gov.acquire(stop), gov.acquire(stop)
    # The answer to the first call: 1 request left in a window that resets in 300 ms. The second
    # call was sent after it, so the provider had not counted it: nothing is left.
    gov.release(first, ok=True, headers={"x-ratelimit-remaining-requests": "1",
                                         "x-ratelimit-reset-requests": "300ms"})  # fmt: skip
    started = time.monotonic()
    gov.release(gov.acquire(stop), ok=True)
    assert time.monotonic() - started >= 0.25 and gov.held == 1
    gov.release(second, ok=True)
    # A 429's Retry-After holds every call of the process, not only its own.
    gov.release(gov.acquire(stop), congested=True, retry_after_s=0.3)
    started = time.monotonic()
    gov.release(gov.acquire(stop), ok=True)
    assert time.monotonic() - started >= 0.25


def test_a_window_is_counted_from_the_calls_sending_not_its_answer():
    """A provider dates its reset when the call arrives; the answer comes a latency later. The
    window turns at the sending plus the reset (and a margin of a few ms), not the answer plus it:
    counting from the answer held every window a latency too long."""
    import threading

    from shipskip.rates import RateGovernor

    gov, stop = RateGovernor(8), threading.Event()
    ticket = gov.acquire(stop)
    time.sleep(0.2)  # the provider's latency: it dated the headers below as the call arrived
    spent = {"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0"}
    gov.release(ticket, ok=True, headers={**spent, "x-ratelimit-reset-requests": "5s"})
    assert gov._ready(ticket.at + 4.9) > 0  # the window is spent: nothing starts before it turns
    assert gov._ready(ticket.at + 5.1) == 0  # counted from the answer, this would wait 0.1 s more

    # A slow answer from a window already over says nothing about the one now.
    gov = RateGovernor(8)
    old, new = gov.acquire(stop), gov.acquire(stop)
    gov.release(new, ok=True, headers={"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "40",
                                       "x-ratelimit-reset-requests": "5s"})  # fmt: skip
    gov.release(old, ok=True, headers={**spent, "x-ratelimit-reset-requests": "100ms"})
    assert gov._ready(time.monotonic()) == 0


def test_calls_that_reach_the_provider_out_of_order_leave_the_whole_window_usable():
    """Sixteen calls sent at once reach a provider allowing 50 a window in some order; each
    answer's remaining count is dated at its arrival. The governor lets exactly the 34 calls left
    start, not fewer (taking "every call sent after this one" as uncounted counted some twice and
    cut a fifth off each window) and not more (a 429)."""
    import random
    import threading

    from shipskip.rates import RateGovernor

    gov, stop = RateGovernor(16), threading.Event()
    burst = [gov.acquire(stop) for _ in range(16)]
    arrival = list(range(16))
    random.Random(3).shuffle(arrival)
    for ticket, rank in zip(burst, arrival, strict=True):
        # The first answer opens the window; its reset is counted from its sending.
        reset = 5.0 - (time.monotonic() - burst[0].at) if rank == arrival[0] else 5.0
        headers = {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": str(50 - rank - 1),
                   "x-ratelimit-reset-requests": f"{reset:.3f}"}  # fmt: skip
        gov.release(ticket, ok=True, headers=headers)
    started = 0
    while gov._ready(time.monotonic()) == 0 and started < 100:
        gov.release(gov.acquire(stop), ok=True)
        started += 1
    assert started == 34
    # Without the limit header the governor keeps to the stricter reading.
    gov, stop = RateGovernor(16), threading.Event()
    burst = [gov.acquire(stop) for _ in range(16)]
    for ticket, rank in zip(burst, arrival, strict=True):
        gov.release(ticket, ok=True, headers={"x-ratelimit-remaining-requests": str(50 - rank - 1),
                                              "x-ratelimit-reset-requests": "5"})  # fmt: skip
    started = 0
    while gov._ready(time.monotonic()) == 0 and started < 100:
        gov.release(gov.acquire(stop), ok=True)
        started += 1
    assert started <= 34


@pytest.mark.slow
def test_clients_sharing_a_governor_stay_under_a_providers_rate_limit(server):
    from concurrent.futures import ThreadPoolExecutor

    from fakeopenai import yes

    from shipskip.rates import RateGovernor

    server.rate_limit = 10
    server.default = lambda req: Reply(
        content="Yes", usage=(100, 1), delay_s=0.05, logprobs=yes(0.9).logprobs
    )
    gov = RateGovernor(8)
    clients = [client(server, limiter=gov, max_retry_wait_s=2) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: clients[i % 4].yes_probability(MSGS), range(40)))
    assert len(answers) == 40 and all(a.p_yes == 0.9 for a in answers)
    # Without the governor 8 calls in flight at 20 a second would meet a 429 in every window.
    assert server.limited <= 2, server.limited
    assert gov.held > 0


def test_a_governor_waking_one_waiter_per_freed_slot_loses_none_and_keeps_its_limit():
    """A release wakes as many waiters as slots are free, not all of them: with ten times more
    callers than slots every one still gets through, and no more than the limit at once."""
    import threading

    from shipskip.rates import RateGovernor

    gov, stop = RateGovernor(4), threading.Event()
    peak, done, lock = [0], [], threading.Lock()

    def call(i: int) -> None:
        ticket = gov.acquire(stop)
        with lock:
            peak[0] = max(peak[0], gov.in_flight)
        time.sleep(0.002)
        gov.release(ticket, ok=True)
        with lock:
            done.append(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(done) == list(range(40))
    assert peak[0] <= 4
    assert gov.in_flight == 0 and gov.answered == 40


def test_a_question_and_a_take_send_exactly_the_parameters_asked_for(server):
    """The client posts its own JSON body (not through `chat.completions.create`): each request
    carries the conversation and the parameters shipskip sets, and nothing else."""
    from fakeopenai import yes

    server.script = [yes(0.8), Reply(content=json.dumps({"take": "Demo is " + "a tool for the tests. " * 3}))]
    c = client(server)
    c.yes_probability(MSGS)
    c.write_take(MSGS, lambda text: None, temperature=0.3, max_tokens=120)
    question, take = ({k: v for k, v in r.items() if k != "_auth"} for r in server.requests)
    assert question == {
        "model": "fake-model", "messages": MSGS, "logprobs": True, "top_logprobs": 10,
        "temperature": 0.0, "max_tokens": 1,
    }  # fmt: skip
    assert take == {
        "model": "fake-model", "messages": MSGS, "temperature": 0.3, "max_tokens": 120,
        "response_format": c._take_format(None),
    }  # fmt: skip
    assert all(r["_auth"] == "Bearer sk-test-secret" for r in server.requests)
