"""Reviewing a card (shipskip.usecases.review_card, as the review-tool flow runs it), against the fake
server and the real model."""

import pytest
from conftest import ROOT, make_take, review
from fakeopenai import Reply, persona_of, standard_answer, take_json

from shipskip.cards import load_card
from shipskip.settings import get_settings
from shipskip.store import Store

CARD = str(ROOT / "data" / "tools" / "claw-code.yaml")


def stored(isolated):
    return Store(isolated / "shipskip.duckdb")


@pytest.mark.slow
def test_review_stores_five_takes_in_one_run(fake, isolated):
    out = review(CARD)
    assert len(out.takes) == 5 and not out.skipped
    rows = stored(isolated).query(
        "SELECT persona, score, verdict, model, prompt_version, prompt_hash, prompt_tokens, attempts, run_id"
        " FROM takes"
    )
    assert sorted(r["persona"] for r in rows) == ["builder", "creator", "founder", "futurist", "skeptic"]
    assert len({r["run_id"] for r in rows}) == 1
    # Tokens and attempts add up over every call a take made (one per question, one for the text).
    assert all(r["model"] == "fake-model" and r["prompt_hash"] and r["prompt_tokens"] == 100 * r["attempts"]
               for r in rows)  # fmt: skip
    assert sum(r["attempts"] for r in rows) == len(fake.requests)


@pytest.mark.slow
def test_same_card_is_not_reviewed_twice_unless_forced(holistic, isolated):
    fake = holistic
    review(CARD)
    again = review(CARD)
    assert again.skipped and len(fake.requests) == 5
    review(CARD, force=True)
    assert len(fake.requests) == 10
    versions = stored(isolated).query("SELECT DISTINCT version FROM takes ORDER BY 1")
    assert [v["version"] for v in versions] == [1, 2]


def test_a_persona_that_keeps_failing_abstains_and_the_rest_count(holistic, isolated):
    fake = holistic

    def answer(req):
        if persona_of(req) == "skeptic":
            return Reply(content="{not json")
        return Reply(content=take_json("ship", 70, lead="Claw Code"))

    fake.default = answer
    out = review(CARD)
    assert out.verdict.line == "Ship · 4 ship / 0 skip" and out.verdict.abstain == 1
    row = stored(isolated).query("SELECT verdict, error, attempts FROM takes WHERE persona = 'skeptic'")[0]
    assert row["verdict"] is None and "JSON" in row["error"] and row["attempts"] == 3


@pytest.mark.slow
def test_an_interrupted_review_does_not_ask_again_for_stored_takes(holistic, isolated):
    fake = holistic
    store = stored(isolated)
    card = load_card(ROOT / "data" / "tools" / "claw-code.yaml")
    run = store.begin_run(card)
    store.checkpoint(run, make_take("builder", "skip", 12, "Claw Code was judged before the crash."))
    store.checkpoint(run, make_take("founder", None, None))
    out = review(CARD)
    assert out.resumed == 2 and len(fake.requests) == 3
    assert {persona_of(r) for r in fake.requests} == {"skeptic", "futurist", "creator"}
    builder = next(t for t in out.takes if t.persona == "builder")
    assert builder.score == 12


def own_children() -> list[str]:
    """Command lines of this test process's own child processes (not the machine's)."""
    import os
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.mark.slow
def test_end_to_end_with_the_real_embedded_model(isolated, prefect_harness):
    """No base URL: the review-tool flow starts llama.cpp's server with SmolLM2-135M, grades the
    checklist from real log-probabilities, writes each take, and stops the server."""
    import json

    from flows.review import review_tool

    out = review_tool(card_path=str(ROOT / "data" / "tools" / "smollm3.yaml"))
    rows = stored(isolated).query(
        "SELECT persona, verdict, score, take, model, scoring, criteria, calibration, uncalibrated, counted,"
        " not_counted_reason, p_ship FROM current_takes"
    )
    assert len(rows) == 5
    # The embedded model costs 0 by its price entry: priced, not unpriced.
    day = stored(isolated).query("SELECT cost_usd, unpriced_takes, takes FROM cost_daily")
    assert day == [{"cost_usd": 0.0, "unpriced_takes": 0, "takes": 5}]
    spoke = [r for r in rows if r["verdict"] is not None]
    assert spoke, "the real model should produce at least one valid take"
    for r in spoke:
        assert 0 <= r["score"] <= 100
        assert (r["verdict"] == "ship") == (r["score"] >= 60)
        assert r["model"] == "SmolLM2-135M-Instruct" and r["scoring"] == "checklist"
        # Scored with the calibration shipped for the packaged model's file, found by its digest.
        assert r["calibration"].startswith("SmolLM2-135M-Instruct (GGUF ") and not r["uncalibrated"]
        crit = json.loads(r["criteria"])
        # Questions answered from real log-probabilities, facts read from the card.
        assert crit and all(c["source"] in ("logprobs", "card") and 0 <= c["p_yes"] <= 1 for c in crit)
        assert {c["source"] for c in crit} == {"logprobs", "card"}
        # Real probabilities, not a sampled 0 or 1.
        assert any(0 < c["p_yes"] < 1 for c in crit if c["source"] == "logprobs")
        assert len(r["take"]) >= 40
        # On SmolLM2-135M the Futurist's lens has shown no signal: its take is kept, not counted.
        assert r["counted"] == (r["persona"] != "futurist") and r["p_ship"] is not None
        assert (r["not_counted_reason"] or "").startswith("not counted" if r["persona"] == "futurist" else "")
    assert out.verdict.ship + out.verdict.skip == len([r for r in spoke if r["persona"] != "futurist"])
    assert not [c for c in own_children() if "llama_cpp.server" in c], "the embedded server must be stopped"


@pytest.mark.slow
def test_a_persona_can_use_its_own_provider_and_model(holistic, isolated, monkeypatch):
    fake = holistic
    from fakeopenai import FakeOpenAI

    with FakeOpenAI() as other:
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__BASE_URL", other.base_url)
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__MODEL", "skeptic-model")
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__RESPONSE_FORMAT", "json_object")
        review(CARD)
    assert len(fake.requests) == 4 and len(other.requests) == 1
    assert other.requests[0]["model"] == "skeptic-model"
    assert other.requests[0]["response_format"]["type"] == "json_object"
    assert {r["response_format"]["type"] for r in fake.requests} == {"json_schema"}
    models = {r["persona"]: r["model"] for r in stored(isolated).query("SELECT persona, model FROM takes")}
    assert models["skeptic"] == "skeptic-model" and models["builder"] == "fake-model"


# -- checklist grading against a fake provider -------------------------------------------


def graded_answers(p_for_question, take_for=None):
    """A fake that answers each Yes/No question with P(yes) from `p_for_question(question)`."""
    from fakeopenai import is_question, is_take_request, question_of, take_text, yes

    def answer(req):
        if is_question(req):
            return yes(p_for_question(question_of(req)))
        if is_take_request(req):
            return (
                take_for(req)
                if take_for
                else take_text(req, "is MIT licensed and runs from my terminal, so it earns its place.")
            )
        raise AssertionError("the checklist path sends no holistic request")

    return answer


def test_checklist_score_is_the_weighted_sum_of_logprob_answers(fake, isolated):
    from shipskip.checklist import score_from
    from shipskip.personas import load_prompts

    fake.default = graded_answers(lambda q: 0.9 if "licence" in q else 0.2)
    out = review(CARD)
    prompts = fake_model_prompts(load_prompts(ROOT / "prompts"))
    rows = stored(isolated).query(
        "SELECT persona, score, verdict, scoring, criteria, take FROM current_takes"
    )
    assert len(rows) == 5
    import json

    from shipskip.models import Criterion, verdict_for

    for r in rows:
        take = next(t for t in out.takes if t.persona == r["persona"])
        if take.abstained:
            continue
        crit = [Criterion(**c) for c in json.loads(r["criteria"])]
        # Questions are answered from log-probabilities, facts from the card, none asked twice.
        assert {c.source for c in crit} == {"logprobs", "card"}
        assert len(crit) == len(prompts.personas[r["persona"]].checklist.items)
        assert r["score"] == score_from(prompts.personas[r["persona"]].checklist, crit)
        assert r["verdict"] == verdict_for(r["score"]) and r["scoring"] == "checklist"
        assert r["take"].startswith(f"I {r['verdict']} Claw Code because it")
    # The card says MIT, a fact that counts for the Builder: it is named among what raised the score.
    builder = next(t for t in out.takes if t.persona == "builder")
    assert prompts.personas["builder"].checklist.calibration.weights["says_open_source"] > 0
    assert "card says open source or open weights" in builder.why.split("; against")[0].split("; lacking")[0]
    assert builder.why.startswith("for: ")

    # One request per question (and relevance), then one take per seat that spoke.
    def asked(persona):
        return sum(i.question is not None for i in prompts.personas[persona].checklist.items)

    questions = sum(asked(n) + (p.checklist.relevance is not None) for n, p in prompts.personas.items())
    spoke = sum(not t.abstained for t in out.takes)
    # A seat cut off by its relevance answer is not asked the rest.
    skipped = sum(asked(t.persona) for t in out.takes if not t.criteria)
    assert len(fake.requests) == questions - skipped + spoke
    assert all(
        r["max_tokens"] == 1 and r["logprobs"]
        for r in fake.requests
        if "Answer Yes or No." in r["messages"][-1]["content"]
    )


@pytest.mark.slow
def test_an_answer_is_explained_against_the_fit_never_against_the_other_answers(fake, isolated):
    """The same answer to one question is listed the same way whatever the model says to the
    others: it is measured against the fit's mean answer to that question. (Measured against the
    take's own mean answer, it was "against" beside low answers and unlisted beside high ones.)"""
    from conftest import rerun

    from shipskip.personas import load_prompts

    skeptic = fake_model_prompts(load_prompts(ROOT / "prompts")).personas["skeptic"].checklist
    assert skeptic.calibration.weights["lock_in"] < 0
    p_lock_in = skeptic.calibration.means["lock_in"] + 0.1

    def answers(others):
        return graded_answers(lambda q: p_lock_in if "lock you into" in q else others)

    fake.default = answers(0.02)
    low = next(t for t in review(CARD).takes if t.persona == "skeptic")
    fake.default = answers(0.97)
    high = rerun("claw-code", "skeptic", "the other answers changed")
    for take in (low, high):
        assert "locks you in" in [c.label for c in take.against], take.why
        assert (
            next(c for c in take.criteria if c.id == "lock_in").baseline
            == skeptic.calibration.means["lock_in"]
        )


@pytest.mark.slow
def test_a_model_answer_never_contradicts_the_card_fact_that_settles_it(fake, isolated):
    """SmolLM3's card reports no failures and offers a free start; Claw Code's card offers no
    free start. A model that answers the opposite is not listed against the card: each seat
    lists what the card states, and nothing on two sides."""
    from shipskip.checklist import explanation_faults
    from shipskip.personas import load_prompts

    prompts = load_prompts(ROOT / "prompts")
    # Yes to every relevance question and every question about failures or a free start, no to
    # the rest.
    relevance = {p.checklist.relevance.question for p in prompts.personas.values() if p.checklist.relevance}
    fake.default = graded_answers(
        lambda q: 0.97 if q in relevance or "failures" in q or "free" in q else 0.02
    )
    smol = {t.persona: t for t in review(ROOT / "data" / "tools" / "smollm3.yaml").takes}
    claw = {t.persona: t for t in review(CARD).takes}
    assert "reported failures or disputes" not in smol["skeptic"].why
    assert "free to start" in [c.label for c in smol["builder"].in_favour]  # the card says free
    assert "free to start" not in [c.label for c in claw["builder"].in_favour]  # it does not
    assert "card offers a free start" in [c.label for c in claw["builder"].lacking]
    for take in (*smol.values(), *claw.values()):
        if take.criteria and not take.abstained:
            assert explanation_faults(prompts.personas[take.persona].checklist, take.criteria) == set(), (
                take.why
            )
    # The pages show what the takes store: read back, the explanation is the same.
    back = {t.persona: t for t in stored(isolated).current_takes("claw-code")}
    assert back["builder"].why == claw["builder"].why


def test_checklist_falls_back_to_sampled_answers_without_logprobs(fake, isolated):
    from fakeopenai import Reply, is_question, is_take_request, take_text

    def answer(req):
        if is_question(req):
            return Reply(
                content="Yes." if "open" in req["messages"][-1]["content"].splitlines()[-2] else "No"
            )
        assert is_take_request(req)
        return take_text(req, "names the MIT licence and the terminal loop as what I would build on.")

    fake.default = answer
    review(CARD)
    import json

    rows = stored(isolated).query("SELECT persona, criteria FROM current_takes WHERE criteria IS NOT NULL")
    crit = [c for r in rows for c in json.loads(r["criteria"])]
    assert crit and {c["source"] for c in crit} == {"sampled", "card"}
    assert {c["p_yes"] for c in crit} <= {0.0, 1.0} and 1.0 in {c["p_yes"] for c in crit}


@pytest.mark.slow
def test_a_provider_that_refuses_logprobs_is_asked_plainly(fake, isolated):
    from fakeopenai import Reply, is_question, take_text

    def answer(req):
        if is_question(req):
            if req.get("logprobs"):
                return Reply(
                    status=400, body='{"error": {"message": "logprobs is not supported for this model"}}'
                )
            return Reply(content="Yes")
        return take_text(req)

    fake.default = answer
    out = review(CARD)
    assert all(not t.abstained for t in out.takes if t.persona in ("skeptic", "futurist"))
    assert any(not r.get("logprobs") for r in fake.requests)


def fake_model_prompts(prompts):
    """The prompts with the calibration the `fake` fixture gives its model."""
    from shipskip import calibrations
    from shipskip.calibrations import ModelKey

    keys = {n: ModelKey("fake-model") for n in prompts.personas}
    return calibrations.calibrated_prompts(prompts, get_settings().calibrations_dir, keys, 70.0)[0]


def test_relevance_no_abstains_without_asking_the_rest(fake, isolated, tmp_path, monkeypatch):

    from shipskip import calibrations
    from shipskip.calibrations import ModelKey
    from shipskip.personas import load_prompts

    founder = load_prompts(ROOT / "prompts").personas["founder"].checklist
    folder, key = get_settings().calibrations_dir, ModelKey("fake-model")
    data = calibrations.read(folder, key)
    entries = [
        e.model_copy(update={"calibration": e.calibration.model_copy(update={"abstain_below": 0.5})})
        if e.persona == "founder" else e
        for e in data.entries
    ]  # fmt: skip
    calibrations.write(folder, data.model_copy(update={"entries": entries}))
    fake.default = graded_answers(lambda q: 0.01 if q == founder.relevance.question else 0.6)
    out = review(CARD)
    take = next(t for t in out.takes if t.persona == "founder")
    assert take.abstained and take.abstain_reason == founder.relevance.abstain_reason
    asked = [r for r in fake.requests if "The Founder asks" in r["messages"][-1]["content"]]
    assert len(asked) == 1


def test_a_take_that_argues_against_its_verdict_is_asked_again_then_composed_from_the_checklist(
    fake, isolated
):
    from fakeopenai import Reply, tool_of

    def contrary(req):
        # Whatever the verdict in the prompt, the take keeps arguing for the other one.
        ships = " is ship (" in req["messages"][1]["content"]
        stance = (
            "is not worth it and I would skip it for now."
            if ships
            else "is a must-have and I would ship it today."
        )
        return Reply(content=json.dumps({"take": f"{tool_of(req)} {stance}"}))

    import json

    fake.default = graded_answers(lambda q: 0.99, take_for=contrary)
    out = review(CARD)
    from shipskip.personas import load_prompts

    outside = {p.checklist.relevance.abstain_reason for p in load_prompts(ROOT / "prompts").personas.values()
               if p.checklist.relevance}  # fmt: skip
    judged = [t for t in out.takes if t.abstain_reason not in outside]
    assert judged
    for t in judged:
        # The provider answered each time; our check refused the text. The seat keeps the
        # verdict its checklist gave it, with a take composed from that checklist.
        assert not t.abstained and t.composed and t.error is None and t.criteria
        assert t.text.startswith(f"I {t.verdict} Claw Code, which its card describes as")
    from fakeopenai import is_take_request

    takes = [r for r in fake.requests if is_take_request(r)]
    assert any("rejected" in r["messages"][-1]["content"] for r in takes)


def attempt_of(req) -> int:
    """Which attempt at a take this request is: every refusal adds the reply and the reason."""
    return (len(req["messages"]) - 2) // 2 + 1


def score_asked(req) -> int:
    import re

    return int(re.search(r"is (?:ship|skip) \((\d+)/100\)", req["messages"][1]["content"]).group(1))


def test_a_take_stating_a_number_a_name_or_a_slot_its_card_lacks_is_asked_again_then_composed(fake, isolated):
    """The demo's takes: '82 billion parameters' (the card says none), a '[card_name]' slot,
    a product the card never names. Each is refused with the reason, asked again, and after
    the last attempt the take is composed from the checklist, keeping its verdict."""
    from fakeopenai import take_text

    invented = [
        "is a large open model that has 82 billion parameters, in the terminal.",
        "is a [card_name] which I have never seen before, in the terminal.",
        "beats Cursor at the agent loop in the terminal.",
    ]
    fake.default = graded_answers(
        lambda q: 0.9, take_for=lambda req: take_text(req, invented[attempt_of(req) - 1])
    )
    out = review(CARD)
    spoke = [t for t in out.takes if not t.abstained]
    assert spoke and all(t.composed and t.verdict and t.score is not None for t in spoke)
    for t in spoke:
        assert "82" not in t.text and "[" not in t.text and "Cursor" not in t.text
    from fakeopenai import is_take_request

    reasons = [
        r["messages"][-1]["content"] for r in fake.requests if is_take_request(r) and attempt_of(r) > 1
    ]
    assert any("a number the card does not give (82" in m for m in reasons)
    assert any("slot unfilled ([card_name])" in m for m in reasons)
    stored_rows = stored(isolated).query("SELECT persona, composed, verdict FROM current_takes")
    assert {r["persona"] for r in stored_rows if r["composed"]} == {t.persona for t in spoke}


def test_a_take_the_card_supports_stands_and_may_state_its_own_score(fake, isolated):
    """A refused take asked again and then fixed stands as written; its own score stated as a
    score ("I give it 82/100") is no invented number."""
    from fakeopenai import take_text

    def take_for(req):
        if attempt_of(req) == 1:
            return take_text(req, "has 82 billion parameters and a terminal agent loop.")
        return take_text(
            req, f"is MIT licensed with a terminal agent loop. I give it {score_asked(req)}/100."
        )

    fake.default = graded_answers(lambda q: 0.9, take_for=take_for)
    out = review(CARD)
    spoke = [t for t in out.takes if not t.abstained]
    assert spoke
    for t in spoke:
        assert not t.composed and t.text.endswith(f"I give it {t.score}/100.") and t.grounded


@pytest.mark.slow
def test_names_with_dots_and_brackets_make_grammars_the_real_server_accepts():
    """A tool name once spliced into a pattern as 'Gemini 2\\.5' crashed llama.cpp's server."""
    from shipskip.embedded import embedded_server
    from shipskip.errors import LLMFailure
    from shipskip.llm import LLMClient

    names = ["Gemini 2.5 Flash", "C++ (Beta)! v1.0", 'Say "hi" \\ now']
    with embedded_server(n_ctx=1024) as url:
        client = LLMClient(base_url=url, api_key=None, model="m", mode="json_object", max_attempts=1)
        for name in names:
            msgs = [{"role": "user", "content": f"Judge {name} in one JSON object."}]
            for call in (
                lambda msgs=msgs, name=name: client.complete(msgs, temperature=0.0, max_tokens=40, lead=name),
                lambda msgs=msgs, name=name: client.write_take(
                    msgs, lambda t: None, temperature=0.0, max_tokens=40, opening=f"I ship {name} because it"
                ),
            ):
                try:
                    call()
                except LLMFailure as exc:  # cut off at 40 tokens is fine; a dead server is not
                    assert "Connection" not in str(exc), exc
        assert client.yes_probability([{"role": "user", "content": "Is water wet?"}]).source == "logprobs"


def test_the_model_recorded_is_the_one_the_provider_reports(fake, isolated):
    from fakeopenai import standard_answer

    def answer(req):
        reply = standard_answer(req)
        reply.model = "served-model-v2"
        return reply

    fake.default = answer
    review(CARD)
    models = {r["model"] for r in stored(isolated).query("SELECT model FROM takes")}
    assert models == {"served-model-v2"}


@pytest.mark.slow
def test_a_killed_review_leaves_no_model_server_behind(isolated):
    """SIGKILL while the embedded llama.cpp server runs: the server, the temporary Prefect API
    and their logs go with shipskip, and a pipe reading shipskip's output ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from reliability_helpers import alive, descendants

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["TMPDIR"] = str(isolated)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipskip", "review", str(ROOT / "data" / "tools" / "smollm3.yaml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    children: dict[int, str] = {}
    while time.monotonic() < deadline and not any("llama_cpp.server" in c for c in children.values()):
        time.sleep(0.5)
        children = descendants(proc.pid)
    assert any("llama_cpp.server" in c for c in children.values()), "the model server never started"
    time.sleep(3)  # let it load the model and take requests
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while alive(list(children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(list(children)), {p: children[p] for p in alive(list(children))}
    assert not [p for p in isolated.iterdir() if p.name.startswith("shipskip-")], "temporary files left"


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["failures in a row", "deadline"])
def test_a_dead_provider_costs_a_bounded_time_and_leaves_the_tool_for_a_later_run(
    fake, isolated, monkeypatch, arm
):
    """A provider that trickles its bytes slower than the deadline allows (the issue's dead
    provider: one tool took 4.5 min and 120 requests): the breaker fails the seats, then the
    tool, within 2 x TIMEOUT_S x MAX_ATTEMPTS, and nothing of the tool is kept."""
    import time

    from shipskip.errors import ProviderDown
    from shipskip.settings import get_settings

    monkeypatch.setenv("SHIPSKIP_TIMEOUT_S", "3")
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "3")
    if arm == "deadline":  # one call at a time, and never enough failures in a row to count
        monkeypatch.setenv("SHIPSKIP_LLM_CONCURRENCY", "1")
        monkeypatch.setenv("SHIPSKIP_BREAKER_FAILURES", "1000")
        monkeypatch.setenv("SHIPSKIP_BREAKER_DEADLINE_S", "2")
    settings = get_settings()
    fake.default = Reply(content="Yes", trickle_s=0.4)
    started = time.monotonic()
    with pytest.raises(ProviderDown) as e:
        review(CARD)
    took = time.monotonic() - started
    budget = 2 * settings.timeout_s * settings.max_attempts
    assert took <= budget, f"{took:.1f} s for one tool against a dead provider; the bound is {budget:g} s"
    # Calls sent before the breaker opened: one streak, plus those already in flight.
    assert (
        len(fake.requests)
        <= min(settings.breaker_failures, 2 * settings.max_attempts) + settings.llm_concurrency
    )
    assert "\n" not in str(e.value) and "not answering" in str(e.value)

    store = stored(isolated)
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'complete'")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM tools")[0]["n"] == 0
    # No take the dead provider spoiled waits to be resumed as an abstention.
    assert store.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 0

    print(f"\n[dead-provider] arm={arm} took={took:.1f}s bound={budget:g}s requests={len(fake.requests)}")

    # The provider is back: the next run reviews the tool in full.
    fake.default = standard_answer
    monkeypatch.delenv("SHIPSKIP_LLM_CONCURRENCY", raising=False)
    out = review(CARD)
    assert len(out.takes) == 5 and not any(t.error for t in out.takes)
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'complete'")[0]["n"] == 1
