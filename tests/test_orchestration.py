"""Prefect as Prefect: a failing seat is Retrying then Failed; workers share one limit on calls."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from fakeopenai import FakeOpenAI, PeakInFlight, standard_answer
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL
from reliability_helpers import write_cards

from flows.review import review_tool
from shipskip.orchestration import LLM_LIMIT

CARD = str(ROOT / "data" / "tools" / "smollm3.yaml")

# Flows on a real Prefect API (the test harness) and worker processes: the slow tier.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_a_seat_whose_provider_keeps_failing_is_retrying_then_failed(fake, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
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
    assert "AwaitingRetry" in names and "Retrying" in names and names[-1] == "Failed"
    assert all(by_name[p].state.is_completed() for p in ("builder", "futurist", "creator", "founder"))


def test_a_take_our_checks_refuse_is_an_abstention_not_a_seat_retry(fake, monkeypatch):
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
    refused = [t for t in out.takes if "fits its verdict" in (t.abstain_reason or "")]
    assert refused and all(t.error is None and "repeats" in t.abstain_reason for t in refused)
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
        artifacts = {mine[a.flow_run_id]: a for a in client.read_artifacts() if a.flow_run_id in mine}
    assert sorted(r.name for r in runs) == ["builder", "creator", "founder", "futurist", "skeptic"]
    assert all(r.state.is_completed() for r in runs)
    # Each run left a review-SLUG artifact: the panel's scorecard; the rerun's gives its reason.
    assert {a.key for a in artifacts.values()} == {"review-smollm3"}
    assert (
        "| Founder |" in artifacts["review"].data and "pricing page went live" not in artifacts["review"].data
    )
    assert "pricing page went live" in artifacts["rerun"].data
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

    from flows.review import ask_as_tasks
    from shipskip.cards import load_card
    from shipskip.personas import load_prompts
    from shipskip.review import open_critics
    from shipskip.settings import get_settings
    from shipskip.store import Store

    settings = get_settings()
    store, card = Store(settings.db_path), load_card(Path(CARD))
    run = store.begin_run(card)
    json.dumps({"card": card.model_dump(mode="json"), "run": dataclasses.asdict(run), "persona": "builder"})

    @flow
    def ask_three_times() -> tuple[dict, dict, dict, list[int]]:
        counts = []
        with open_critics(settings, load_prompts(settings.prompts_dir), ["builder"]) as critics:
            first = ask_as_tasks(critics, store, run, ["builder"], card, None)
            counts.append(len(fake.requests))
            again = ask_as_tasks(critics, store, run, ["builder"], card, None)  # a retried flow run
            counts.append(len(fake.requests))
            other = dataclasses.replace(run, run_id=uuid.uuid4().hex)  # a rerun is a new run
            fresh = ask_as_tasks(critics, store, other, ["builder"], card, None)
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
        artifacts = [a for a in client.read_artifacts() if a.flow_run_id == parent]
    assert sorted(c.name for c in children) == [f"review-{s}" for s in slugs]
    assert all(c.state.is_completed() for c in children)
    # Each reviewed tool left its review-SLUG artifact on the ingest's own run.
    assert sorted(a.key for a in artifacts) == [f"review-{s}" for s in slugs]
    assert all(a.type == "markdown" and "| Founder |" in a.data for a in artifacts)
