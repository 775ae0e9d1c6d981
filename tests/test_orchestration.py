"""Prefect as Prefect: a failing seat is Retrying then Failed; workers share one limit on calls;
bad input fails a flow run in one line; a served worker stops on SIGTERM."""

import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from fakeopenai import FakeOpenAI, PeakInFlight, standard_answer
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL
from reliability_helpers import alive, descendants, logged_requests, start_fake_process, write_cards

from flows.review import PERSONA_FAILED, review_tool
from shipskip.orchestration import LLM_LIMIT

CARD = str(ROOT / "data" / "tools" / "smollm3.yaml")

# Flows on a real Prefect API (the test harness) and worker processes: the slow tier.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_a_seat_whose_provider_keeps_failing_is_retrying_then_failed(fake, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    # The seat's task retries; the circuit breaker, which would give the provider up and fail
    # the tool instead (test_review.py, test_cli.py), is kept out of the way here.
    monkeypatch.setenv("SHIPSKIP_BREAKER_FAILURES", "1000")
    monkeypatch.setenv("SHIPSKIP_BREAKER_DEADLINE_S", "1000")
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SHIPSKIP_MAX_RETRY_WAIT_S", "0.1")
    state = review_tool(card_path=CARD, return_state=True)
    out = state.result()
    assert [t.persona for t in out.takes if t.error] == ["skeptic"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
        by_name = {r.name: r for r in runs}
        skeptic = by_name["skeptic"]
        assert skeptic.state.is_failed() and skeptic.run_count == 2
        assert re.fullmatch(
            r"skeptic failed after \d+ attempts, try 2 of 2: APIConnectionError.*", skeptic.state.message
        )
        names = [s.name for s in client.read_task_run_states(skeptic.id)]
    # The seat's own failure ends in a state of its own name (of type FAILED), which is how the
    # flow tells it from a task that broke.
    assert "AwaitingRetry" in names and "Retrying" in names and names[-1] == PERSONA_FAILED
    assert all(by_name[p].state.is_completed() for p in ("builder", "futurist", "creator", "founder"))


def test_a_take_our_checks_refuse_is_composed_not_a_seat_retry(fake, monkeypatch):
    import json

    from fakeopenai import Reply, is_question, is_take_request, tool_of, yes

    def answer(req):
        if is_question(req):
            return yes(0.9)
        assert is_take_request(req)
        # Well formed every time, but it recites the prompt instead of judging the tool.
        return Reply(
            content=json.dumps({"take": f"{tool_of(req)}: you are the reviewer; answer as one JSON object."})
        )

    fake.default = answer
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "2")
    state = review_tool(card_path=CARD, return_state=True)
    out = state.result()
    # Refused at every attempt, each take is composed from its checklist and keeps its verdict.
    refused = [t for t in out.takes if t.composed]
    assert refused and all(t.error is None and not t.abstained and t.verdict for t in refused)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    # Each seat ran once: a refused take does not send the whole checklist again after a pause.
    assert len(runs) == 5 and all(r.state.is_completed() and r.run_count == 1 for r in runs)
    takes_asked = [r for r in fake.requests if is_take_request(r)]
    assert len(takes_asked) == 2 * len(refused)


def test_two_workers_count_against_one_global_limit_on_calls(tmp_path):
    slow = PeakInFlight(standard_answer, 0.05)
    with FakeOpenAI(default=slow) as fake:
        procs = []
        for i in range(2):
            inbox = tmp_path / f"inbox{i}"
            write_cards(inbox, 1)
            env = {
                **os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "SHIPSKIP_BASE_URL": fake.base_url,
                "SHIPSKIP_MODEL": "fake", "SHIPSKIP_LLM_CONCURRENCY": "2",
                "SHIPSKIP_DB_PATH": str(tmp_path / f"worker{i}.duckdb"),
            }  # fmt: skip
            procs.append(subprocess.Popen([sys.executable, "-m", "shipskip", "ingest", str(inbox)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
        results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    # Each worker alone would allow 2 calls in flight; together they still had at most 2.
    assert len(fake.requests) > 50 and slow.peak == 2
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(LLM_LIMIT).limit == 2


def test_flows_wrap_the_use_cases_with_a_task_per_seat_artifacts_and_a_line_per_take(fake, caplog):
    import logging

    from flows.scheduled import rerun_persona

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):  # the CLI's tests quiet these
        caplog.set_level(logging.INFO, logger=name)
    state = review_tool(card_path=CARD, return_state=True)
    assert len(state.result().takes) == 5
    rerun = rerun_persona(
        tool="smollm3", persona="founder", reason="pricing page went live", return_state=True
    )
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
        mine = {state.state_details.flow_run_id: "review", rerun.state_details.flow_run_id: "rerun"}
        artifacts = {
            mine[a.flow_run_id]: a
            for a in client.read_artifacts()
            if a.flow_run_id in mine and a.key != "site-pages"  # the site's own (tests/test_site.py)
        }
    assert sorted(r.name for r in runs) == ["builder", "creator", "founder", "futurist", "skeptic"]
    assert all(r.state.is_completed() for r in runs)
    # Each run left a review-SLUG artifact: the panel's scorecard; the rerun's gives its reason.
    assert {a.key for a in artifacts.values()} == {"review-smollm3"}
    assert (
        "| Founder |" in artifacts["review"].data and "pricing page went live" not in artifacts["review"].data
    )
    assert "pricing page went live" in artifacts["rerun"].data
    # The review's cost: fake-model has no price, so it reads unpriced, never $0.
    assert "Cost: unpriced (no price for fake-model; 5 takes" in artifacts["review"].data
    lines = [r.getMessage() for r in caplog.records if "smollm3 · " in r.getMessage()]
    assert {ln.split(" · ")[1].split(":")[0] for ln in lines} >= {"builder", "skeptic", "founder"}
    assert all("model fake-model" in ln and "tokens" in ln for ln in lines)


def test_a_seat_task_takes_serialisable_inputs_and_is_cached_within_its_run(fake, isolated):
    """pydantic-ai's pattern: the live client stays outside the task; the task's inputs (card,
    persona, run, reason) are plain data, and a cache key names the take: run, seat, prompt, model."""
    import dataclasses
    import json
    import uuid
    from pathlib import Path

    from prefect import flow

    from flows.review import PrefectAsker
    from shipskip.cards import load_card
    from shipskip.personas import load_prompts
    from shipskip.review import open_panel
    from shipskip.settings import get_settings
    from shipskip.store import Store

    settings = get_settings()
    store, card = Store(settings.db_path), load_card(Path(CARD))
    run = store.begin_run(card)
    json.dumps({"card": card.model_dump(mode="json"), "run": dataclasses.asdict(run), "persona": "builder"})

    @flow
    def ask_three_times() -> tuple[dict, dict, dict, list[int]]:
        counts = []
        with open_panel(settings, load_prompts(settings.prompts_dir), ["builder"]) as panel:
            asker = PrefectAsker(panel, store)
            first = asker.ask(card, ["builder"], run)
            counts.append(len(fake.requests))
            again = asker.ask(card, ["builder"], run)  # a retried flow run
            counts.append(len(fake.requests))
            other = dataclasses.replace(run, run_id=uuid.uuid4().hex)  # a rerun is a new run
            fresh = asker.ask(card, ["builder"], other)
            counts.append(len(fake.requests))
        return first, again, fresh, counts

    first, again, fresh, counts = ask_three_times()
    assert counts[0] > 0 and counts[1] == counts[0] and counts[2] > counts[1]
    assert again["builder"] == first["builder"] and fresh["builder"].score == first["builder"].score


def test_each_tool_of_an_ingest_is_a_subflow_run_with_its_artifact(fake, tmp_path, monkeypatch):
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId

    from flows.scheduled import review_new_tools

    monkeypatch.setenv("SHIPSKIP_LLM_CONCURRENCY", "16")  # all six tools at once
    slugs = write_cards(tmp_path / "inbox", 6)
    state = review_new_tools(source=str(tmp_path / "inbox"), return_state=True)
    assert sorted(state.result()["reviewed"]) == slugs
    parent = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
        )
        artifacts = [a for a in client.read_artifacts() if a.flow_run_id == parent and a.key != "site-pages"]
    assert sorted(c.name for c in children) == [f"review-{s}" for s in slugs]
    assert all(c.state.is_completed() for c in children)
    # Each reviewed tool left its review-SLUG artifact on the ingest's own run.
    assert sorted(a.key for a in artifacts) == [f"review-{s}" for s in slugs]
    assert all(a.type == "markdown" and "| Founder |" in a.data for a in artifacts)


def _logs_of(flow_run_id) -> list[tuple[int, str]]:
    """(level, message) of every log line a flow run sent to the API."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [(log.level, log.message) for log in logs]


def test_bad_inputs_end_the_flow_run_failed_in_one_line_without_a_traceback(fake, isolated, caplog):
    from conftest import make_card, make_take

    from flows.maintain import maintain_store
    from flows.render import render_comparison
    from flows.scheduled import rerun_persona, review_new_tools
    from shipskip.errors import UnknownTool
    from shipskip.roster import personas
    from shipskip.store import Store

    caplog.set_level(logging.INFO, logger="shipskip.lifeline")
    for name in ("prefect", "prefect.flow_runs", "prefect.flows", "prefect.engine"):
        caplog.set_level(logging.INFO, logger=name)
    store, card = Store(isolated / "shipskip.duckdb"), make_card()
    store.commit_review(store.begin_run(card), card, [make_take(p, "ship", 70) for p in personas()])
    cases = [
        (rerun_persona, dict(tool="nope", persona="skeptic", reason="editor rerun"), "slug 'nope'"),
        # Refused by the flow's parameter types, before it runs.
        (rerun_persona, dict(tool="demo-tool", persona="critic", reason="x y"), "persona: Input should be"),
        (
            rerun_persona,
            dict(tool="demo-tool", persona="skeptic", reason="x y", prompt_version="9"),
            "skeptic@9",
        ),
        (rerun_persona, dict(tool="demo-tool", persona="skeptic", reason="x y", model=""), "model: "),
        (review_tool, dict(card_path=str(isolated / "nope.yaml")), "nope.yaml"),
        (review_new_tools, dict(source=str(isolated / "no-inbox")), "source: "),
        (render_comparison, dict(tool_a="demo-tool", tool_b="nope"), "nope"),
        (maintain_store, dict(keep_days=-1), "keep_days: "),
    ]
    for flow_fn, params, said in cases:
        caplog.clear()
        run_id = flow_fn(**params, return_state=True).state_details.flow_run_id
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        assert state.is_failed(), (params, state)
        assert "\n" not in state.message and said in state.message, (params, state.message)
        # What a worker prints: one line at ERROR, saying the same, with no traceback.
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert said in errors[0].getMessage() and "\n" not in errors[0].getMessage()
        assert errors[0].exc_info is None
        # And the run's own log on the API holds nothing that looks like a crash.
        logs = _logs_of(run_id)
        assert not any("Traceback" in m or "Encountered exception" in m for _, m in logs), logs
    # Nothing was asked and no server started for any of them.
    assert fake.requests == []
    assert [r for r in caplog.records if r.name == "shipskip.lifeline"] == []
    # A caller in this process (the CLI) gets the typed error back, not Prefect's wrapper.
    with pytest.raises(UnknownTool) as got:
        rerun_persona(tool="nope", persona="skeptic", reason="editor rerun")
    assert got.value.slug == "nope"


SERVED = "review-new-tools/served-daily-new-tools"


def _serve(tmp_path, inbox, base_url, **extra_env) -> subprocess.Popen:
    """`shipskip serve` as a child in its own process group, against the test harness's API,
    once it has registered its deployment. Its console goes to tmp_path/worker.log."""
    env = {
        **os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "SHIPSKIP_BASE_URL": base_url,
        "SHIPSKIP_MODEL": "fake-model", "SHIPSKIP_DB_PATH": str(tmp_path / "served.duckdb"),
        "SHIPSKIP_LLM_CONCURRENCY": "2", "PREFECT_RUNNER_POLL_FREQUENCY": "1", **extra_env,
    }  # fmt: skip
    _end_leftover_runs()
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "shipskip", "serve", "--source", str(inbox)], env=env, cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while "serving served-daily-new-tools" not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return worker


def _end_leftover_runs() -> None:
    """Runs of the served deployment an earlier test's worker left unfinished (one killed at
    once by a second SIGTERM stays Running) hold its concurrency slot (limit 1): end them."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[SERVED.split("/")[1]]))
        )
        for run in runs:
            if not run.state.is_final():
                client.set_flow_run_state(run.id, Cancelled(message="left by an earlier test"))


def _trigger(**parameters):
    from prefect.deployments import run_deployment

    return run_deployment(SERVED, parameters=parameters or None, timeout=0)


def _stop_all(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


def _saved(store) -> set[tuple[str, str]]:
    """(slug, persona) of every take stored or checkpointed."""
    rows = store.query("SELECT r.slug, c.persona FROM take_checkpoints c JOIN runs r USING (run_id)")
    rows += store.query("SELECT slug, persona FROM takes")
    return {(r["slug"], r["persona"]) for r in rows}


def test_a_served_worker_fails_bad_runs_in_one_line_and_stops_on_sigterm_in_ten_seconds(tmp_path):
    from shipskip.store import Store

    inbox = tmp_path / "inbox"
    write_cards(inbox, 4)
    requests = tmp_path / "requests.jsonl"
    fake, url = start_fake_process(0.3, requests)
    try:
        worker = _serve(tmp_path, inbox, url)
        try:
            # A run with a source that is not one: Failed, one line in its state and the worker's log.
            bad = _trigger(source=str(tmp_path / "no-inbox"))
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 120
                while not (state := client.read_flow_run(bad.id).state).is_final():
                    assert time.monotonic() < deadline, state
                    time.sleep(0.5)
            assert state.is_failed() and "\n" not in state.message and "no-inbox" in state.message
            console = (tmp_path / "worker.log").read_text()
            assert [ln for ln in console.splitlines() if "no-inbox" in ln] != []
            assert "Traceback" not in console, console[-3000:]

            _trigger()
            deadline = time.monotonic() + 180
            while len(logged_requests(requests)) < 40:
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            children = descendants(worker.pid)
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            worker.wait(timeout=10)  # the target: out within 10 s
            took = time.monotonic() - started
        finally:
            _stop_all(worker)
        # 0: its runs stopped within the grace period; 143: the grace ran out and they were killed
        # (a loaded machine). Either way nothing kept may be lost or asked again (below).
        assert worker.returncode in (0, 128 + signal.SIGTERM), (tmp_path / "worker.log").read_text()[-3000:]
        deadline = time.monotonic() + 5
        while alive(list(children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(list(children)), children

        store = Store(tmp_path / "served.duckdb")
        per_run = store.query("SELECT run_id, count(*) AS n FROM takes GROUP BY run_id")
        assert all(r["n"] == 5 for r in per_run), "a committed review always has all five takes"
        # The stopped runs let their tools go: the next run takes them at once.
        held = store.query("SELECT count(*) AS n FROM runs WHERE status = 'running' AND owner IS NOT NULL")
        assert held[0]["n"] == 0
        saved = _saved(store)
        assert len(saved) < 20, "the stop came mid-way"
        asked_before = len(logged_requests(requests))

        env = {**os.environ, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_MODEL": "fake-model",
               "SHIPSKIP_DB_PATH": str(tmp_path / "served.duckdb")}  # fmt: skip
        again = subprocess.run([sys.executable, "-m", "shipskip", "ingest", str(inbox)], env=env,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        fake.kill()
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 20
    assert store.query("SELECT count(*) AS n FROM take_checkpoints")[0]["n"] == 0
    later = logged_requests(requests)[asked_before:]
    repeated = {(r["tool"].lower().replace(" ", "-"), r["persona"]) for r in later} & saved
    assert not repeated, f"takes kept at the stop were asked again: {repeated}"
    print(
        f"\n[sigterm] exit_s={took:.1f} status={worker.returncode} takes_kept_at_stop={len(saved)} "
        "asked_again=0 takes_final=20"
    )


def test_a_second_sigterm_stops_the_worker_at_once(tmp_path):
    from shipskip.store import Store

    inbox = tmp_path / "inbox"
    write_cards(inbox, 2)
    requests = tmp_path / "requests.jsonl"
    # Replies that take 30 s, and a minute's grace: only the second SIGTERM ends this soon.
    fake, url = start_fake_process(30, requests)
    try:
        worker = _serve(tmp_path, inbox, url, SHIPSKIP_SHUTDOWN_GRACE_S="60")
        try:
            _trigger()
            deadline = time.monotonic() + 180
            while len(logged_requests(requests)) < 2:
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            children = descendants(worker.pid)
            worker.send_signal(signal.SIGTERM)
            time.sleep(1)
            assert worker.poll() is None  # the first one waits for the calls in flight
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=10)
        finally:
            _stop_all(worker)
    finally:
        fake.kill()
    assert worker.returncode == 128 + signal.SIGTERM, (tmp_path / "worker.log").read_text()[-3000:]
    deadline = time.monotonic() + 5
    while alive(list(children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(list(children)), children
    store = Store(tmp_path / "served.duckdb")
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 0  # nothing half-written
