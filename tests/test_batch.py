"""Batch mode against the fake provider's Files and Batches endpoints: the same takes as direct
mode, batch tokens at half price, resume after a kill, expired and failed lines asked again."""

import hashlib

import pytest
from conftest import ingest
from fakeopenai import is_question, question_of, take_text, yes
from reliability_helpers import write_cards

from shipskip import costs
from shipskip.errors import SettingsError
from shipskip.settings import get_settings
from shipskip.store import Store


def scripted(req):
    """A P(yes) of its own for each question, the same in direct and batch mode."""
    if is_question(req):
        digest = hashlib.sha256((question_of(req) + req["messages"][-1]["content"][:80]).encode()).digest()
        return yes(0.05 + 0.9 * digest[0] / 255)
    return take_text(req)


@pytest.fixture
def batch_fake(fake, isolated, monkeypatch):
    fake.default = scripted
    prices = isolated / "prices.toml"
    prices.write_text('[models."fake-model"]\ninput = 2.0\noutput = 8.0\n')
    monkeypatch.setenv("SHIPSKIP_PRICES_PATH", str(prices))
    return fake


def takes_of(db):
    store = Store(db)
    rows = store.query(
        "SELECT slug, persona, score, verdict, take, criteria FROM current_takes ORDER BY slug, persona"
    )
    return rows, store


def direct_questions(fake):
    return [r for r in fake.requests if is_question(r)]


def run_direct(isolated, monkeypatch, inbox):
    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(isolated / "direct.duckdb"))
    report = ingest(inbox)
    assert len(report["reviewed"]) == 3
    return takes_of(isolated / "direct.duckdb")


@pytest.mark.slow
def test_batch_mode_gives_the_direct_takes_at_half_the_price_of_its_questions(
    batch_fake, isolated, monkeypatch
):
    inbox = isolated / "inbox"
    write_cards(inbox, 3)
    direct, direct_store = run_direct(isolated, monkeypatch, inbox)
    asked_directly = len(direct_questions(batch_fake))

    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(isolated / "batch.duckdb"))
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    before = len(batch_fake.requests)
    first = ingest(inbox)
    # The first run submits one job with every question and reviews nothing yet.
    assert first["reviewed"] == [] and sorted(first["batch_waiting"]) == ["tool-000", "tool-001", "tool-002"]
    assert len(batch_fake.batches) == 1 and "submitted batch batch_1" in first["batch"]
    second = ingest(inbox)
    assert sorted(second["reviewed"]) == ["tool-000", "tool-001", "tool-002"] and not second["batch_waiting"]
    assert "collected batch batch_1 (completed)" in second["batch"]
    # Every question went through the job, none straight to the provider, none twice.
    assert len(batch_fake.batch_lines) == asked_directly
    assert len({line["custom_id"] for line in batch_fake.batch_lines}) == asked_directly
    assert [r for r in batch_fake.requests[before:] if is_question(r)] == []
    batched, store = takes_of(isolated / "batch.duckdb")
    assert batched == direct  # the same scores, verdicts, takes and criteria
    # The questions' tokens are recorded as batch tokens, and cost half.
    tokens = store.query(
        "SELECT sum(batch_prompt_tokens) AS p, sum(batch_completion_tokens) AS c FROM takes"
    )[0]
    assert tokens["p"] == 100 * asked_directly and tokens["c"] == asked_directly
    costs.sync_prices(direct_store, get_settings())
    full = direct_store.query("SELECT sum(cost_usd) AS c FROM cost_per_review")[0]["c"]
    half = store.query("SELECT sum(cost_usd) AS c FROM cost_per_review")[0]["c"]
    question_cost = (tokens["p"] * 2.0 + tokens["c"] * 8.0) / 1e6
    assert half == pytest.approx(full - question_cost / 2)


@pytest.mark.slow
def test_a_kill_between_submit_and_collect_loses_nothing_and_submits_nothing_twice(
    batch_fake, isolated, monkeypatch
):
    inbox = isolated / "inbox"
    write_cards(inbox, 2)
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    batch_fake.batch_polls = 1  # the job is still running when the next run first looks

    real = Store.batch_submitted

    def killed(self, key, batch_id, status):
        raise KeyboardInterrupt  # the process dies after the job was created, before its id is stored

    monkeypatch.setattr(Store, "batch_submitted", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(inbox)
    monkeypatch.setattr(Store, "batch_submitted", real)
    assert len(batch_fake.batches) == 1
    waiting = ingest(inbox)  # finds the job by its key, sees it running, submits nothing
    assert len(batch_fake.batches) == 1 and waiting["reviewed"] == [] and len(waiting["batch_waiting"]) == 2
    done = ingest(inbox)
    assert sorted(done["reviewed"]) == ["tool-000", "tool-001"] and len(batch_fake.batches) == 1
    assert direct_questions(batch_fake) == []
    store = Store.from_settings(get_settings())
    assert store.query("SELECT count(*) AS n FROM current_takes")[0]["n"] == 10
    assert ingest(inbox)["unchanged"] == ["tool-000", "tool-001"]


@pytest.mark.slow
def test_expired_and_failed_lines_are_asked_again_directly(batch_fake, isolated, monkeypatch):
    inbox = isolated / "inbox"
    write_cards(inbox, 3)
    direct, _ = run_direct(isolated, monkeypatch, inbox)
    asked_directly = len(direct_questions(batch_fake))
    batch_fake.requests.clear()

    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(isolated / "batch.duckdb"))
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    batch_fake.batch_end, batch_fake.batch_ran = "expired", asked_directly // 2
    batch_fake.batch_fails = lambda body: (
        "tool-001" in body["messages"][-1]["content"].lower().replace(" ", "-")
    )
    ingest(inbox)
    report = ingest(inbox)
    assert "collected batch batch_1 (expired)" in report["batch"]
    assert sorted(report["reviewed"]) == ["tool-000", "tool-001", "tool-002"]
    answered = Store.from_settings(get_settings()).query(
        "SELECT count(*) FILTER (WHERE state = 'answered') AS a, count(*) FILTER (WHERE state = 'failed') AS f"
        " FROM batch_requests"
    )[0]
    assert answered["a"] + answered["f"] == asked_directly and answered["f"] > asked_directly // 2
    # Only the questions the job did not answer were asked again, once each.
    assert len(direct_questions(batch_fake)) == answered["f"]
    assert len(batch_fake.batches) == 1
    batched, _ = takes_of(isolated / "batch.duckdb")
    assert batched == direct


def test_batch_mode_needs_a_hosted_provider(isolated, monkeypatch):
    write_cards(isolated / "inbox", 1)
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    with pytest.raises(SettingsError) as caught:
        ingest(isolated / "inbox")
    assert caught.value.variable == "SHIPSKIP_BATCH"


@pytest.mark.slow
def test_batch_mode_on_a_lake(batch_fake, lake, isolated, monkeypatch):
    inbox = isolated / "inbox"
    write_cards(inbox, 2)
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    batch_fake.batch_fails = lambda body: (
        "tool-001" in body["messages"][-1]["content"].lower().replace(" ", "-")
    )
    assert len(ingest(inbox)["batch_waiting"]) == 2
    done = ingest(inbox)
    assert sorted(done["reviewed"]) == ["tool-000", "tool-001"] and len(batch_fake.batches) == 1
    failed = lake.query("SELECT count(*) AS n FROM batch_requests WHERE state = 'failed'")[0]["n"]
    assert failed > 0 and len(direct_questions(batch_fake)) == failed
    assert lake.query("SELECT sum(batch_prompt_tokens) AS p FROM takes")[0]["p"] > 0


def test_batch_mode_needs_checklist_scoring(holistic, isolated, monkeypatch):
    write_cards(isolated / "inbox", 1)
    monkeypatch.setenv("SHIPSKIP_BATCH", "1")
    with pytest.raises(SettingsError) as caught:
        ingest(isolated / "inbox")
    assert caught.value.variable == "SHIPSKIP_BATCH" and "SHIPSKIP_SCORING" in str(caught.value)
    assert holistic.requests == []
