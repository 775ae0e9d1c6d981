"""Prices, the cost views, the cost lines of `show`, and the run budget, on a real DuckDB file
against the fake provider."""

import json
from datetime import date

import pytest
from conftest import ROOT, ingest, make_card, make_take, review
from fakeopenai import Reply, standard_answer
from typer.testing import CliRunner

from shipskip import costs
from shipskip.cli import app
from shipskip.errors import InputError, SettingsError
from shipskip.models import Usage
from shipskip.settings import get_settings
from shipskip.store import Store

CARD = ROOT / "data" / "tools" / "claw-code.yaml"
runner = CliRunner()


def write_prices(path, body: str) -> None:
    path.write_text(body, encoding="utf-8")


def test_shipped_prices_are_dated_and_price_the_embedded_model_at_zero():
    prices = {p.model: p for p in costs.configured_prices(get_settings())}
    assert prices["SmolLM2-135M-Instruct"].input == 0 and prices["SmolLM2-135M-Instruct"].output == 0
    assert prices["gpt-4o-mini"].cached_input < prices["gpt-4o-mini"].input < prices["gpt-4o-mini"].output
    assert all(p.as_of is not None for p in prices.values())


def test_the_users_file_adds_and_replaces_prices(isolated, monkeypatch):
    own = isolated / "prices.toml"
    write_prices(own, '[models."gpt-4o-mini"]\ninput = 1\noutput = 2\nas_of = 2026-12-01\n'
                      '[models."my-model"]\ninput = 3\ncached_input = 1.5\noutput = 6\n')  # fmt: skip
    monkeypatch.setenv("SHIPSKIP_PRICES_PATH", str(own))
    prices = {p.model: p for p in costs.configured_prices(get_settings())}
    assert prices["gpt-4o-mini"].input == 1.0 and prices["gpt-4o-mini"].cached_input is None
    assert prices["gpt-4o-mini"].as_of == date(2026, 12, 1) and prices["gpt-4o-mini"].source == str(own)
    assert prices["my-model"].cached_input == 1.5 and prices["gpt-4o"].source == "shipped"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[models."m"]\ninput = -1\noutput = 2\n', "models.m.input"),
        ('[models."m"]\ninput = 1\n', "models.m.output"),
        ('[models."m"]\ninput = 1\noutput = 2\nextra = 3\n', "models.m.extra"),
        ("[models\n", "(file)"),
    ],
)
def test_a_bad_price_file_is_one_line_naming_the_file_and_field(isolated, monkeypatch, body, field):
    own = isolated / "prices.toml"
    write_prices(own, body)
    monkeypatch.setenv("SHIPSKIP_PRICES_PATH", str(own))
    with pytest.raises(InputError) as caught:
        costs.configured_prices(get_settings())
    assert caught.value.path == str(own) and caught.value.field == field
    assert len(str(caught.value).splitlines()) == 1


def test_a_take_costs_uncached_cached_and_output_tokens_at_their_own_prices():
    book = costs.PriceBook.of([costs.Price(model="m", input=2.0, cached_input=0.5, output=8.0)])
    take = make_take("builder", "ship", 80).model_copy(
        update={"usage": Usage(prompt_tokens=1000, cached_tokens=600, completion_tokens=100)}
    )
    assert book.take_cost(take) == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6)
    # A dated snapshot is priced as its model; another model is unpriced, not free.
    assert book.take_cost(take.model_copy(update={"model": "m-2025-08-07"})) == book.take_cost(take)
    assert book.take_cost(take.model_copy(update={"model": "mx"})) is None
    summary = costs.summarise([take, take.model_copy(update={"model": "other"})], book)
    assert summary.text().startswith("$0.0019 + unpriced (no price for other;")


@pytest.mark.slow
def test_an_unpriced_model_reads_unpriced_in_the_views_and_in_show(fake, isolated):
    review(CARD)
    store = Store.from_settings(get_settings())
    costs.sync_prices(store, get_settings())
    day = store.query("SELECT * FROM cost_daily")
    assert len(day) == 1 and day[0]["takes"] == 5 and day[0]["unpriced_takes"] == 5
    assert day[0]["cost_usd"] is None  # not 0: fake-model has no price
    shown = runner.invoke(app, ["show", "claw-code"])
    assert shown.exit_code == 0, shown.output
    assert "Cost: unpriced (no price for fake-model; 5 takes" in shown.output


@pytest.mark.slow
def test_cost_views_count_failed_attempts_and_price_cached_input(fake, isolated, monkeypatch):
    own = isolated / "prices.toml"
    write_prices(
        own, '[models."fake-model"]\ninput = 2.0\ncached_input = 0.5\noutput = 8.0\nas_of = 2026-12-06\n'
    )
    monkeypatch.setenv("SHIPSKIP_PRICES_PATH", str(own))
    asked = {"n": 0}

    def answer(req):
        got = standard_answer(req)
        asked["n"] += 1
        if asked["n"] == 1:
            # The first question is answered with something that is not Yes or No: a failed
            # attempt whose tokens are spent all the same.
            return Reply(content="Perhaps", usage=(100, 1), cached=80)
        got.cached = 80
        return got

    fake.default = answer
    out = review(CARD)
    store = Store.from_settings(get_settings())
    takes = store.current_takes("claw-code")
    attempts = sum(t.attempts for t in takes)
    assert attempts == len(fake.requests)  # the failed attempt is one of them
    expected = sum(
        ((t.usage.prompt_tokens - t.usage.cached_tokens) * 2.0 + t.usage.cached_tokens * 0.5
         + t.usage.completion_tokens * 8.0) / 1e6 for t in takes
    )  # fmt: skip
    assert sum(t.usage.cached_tokens for t in takes) == 80 * len(fake.requests)
    per_review = store.query("SELECT * FROM cost_per_review")
    assert len(per_review) == 1 and per_review[0]["attempts"] == attempts
    assert per_review[0]["cost_usd"] == pytest.approx(expected) and per_review[0]["unpriced_takes"] == 0
    assert store.query("SELECT sum(cost_usd) AS c FROM cost_per_persona")[0]["c"] == pytest.approx(expected)
    model = store.query("SELECT * FROM cost_per_model")[0]
    assert model["model"] == "fake-model" and model["priced"] and model["prices_as_of"] == date(2026, 12, 6)
    assert store.query("SELECT cost_usd FROM cost_daily")[0]["cost_usd"] == pytest.approx(expected)
    # The same figure the command line prints, from the same prices.
    book = costs.PriceBook.of(costs.configured_prices(get_settings()))
    assert costs.summarise(out.takes, book).usd == pytest.approx(expected)
    shown = runner.invoke(app, ["show", "claw-code"])
    assert f"Cost: {costs.money(expected)} (5 takes, {attempts} requests" in shown.output


def test_the_embedded_model_costs_zero_by_its_price_not_unpriced(file_store):
    file_store.init()
    costs.sync_prices(file_store, get_settings())
    card = make_card()
    takes = [
        make_take(p, "ship", 70).model_copy(update={"model": "SmolLM2-135M-Instruct"})
        for p in ("builder", "skeptic", "futurist", "creator", "founder")
    ]
    file_store.commit_review(file_store.begin_run(card), card, takes)
    day = file_store.query("SELECT cost_usd, unpriced_takes FROM cost_daily")[0]
    assert day["cost_usd"] == 0 and day["unpriced_takes"] == 0


def test_prices_are_loaded_once_and_listed(fake, isolated):
    store = Store.from_settings(get_settings())
    first = runner.invoke(app, ["prices"])
    assert first.exit_code == 0 and "gpt-4o-mini" in first.output and "2025-08-07" in first.output
    rows = {r["model"]: r for r in store.prices()}
    assert rows["gpt-4o-mini"]["usd_per_mtok_cached"] == 0.075
    # Nothing changed: nothing is written again.
    assert store.set_prices([(m, r["usd_per_mtok_prompt"], r["usd_per_mtok_cached"],
                              r["usd_per_mtok_completion"], r["as_of"]) for m, r in rows.items()]) == 0  # fmt: skip


# -- the budget ---------------------------------------------------------------------------


def many_cards(folder, n: int):
    path = folder / "tools.jsonl"
    with path.open("w") as f:
        for i in range(n):
            card = make_card(slug=f"tool-{i}", name=f"Tool {i}").model_dump(mode="json", exclude_none=True)
            f.write(json.dumps(card) + "\n")
    return path


@pytest.mark.slow
def test_a_run_capped_at_30_percent_stops_near_the_cap_and_marks_nothing_it_did_not_finish(
    holistic, isolated, monkeypatch
):
    source = many_cards(isolated, 10)
    per_tool = 5 * 130  # five holistic takes of 100 prompt and 30 completion tokens
    cap = int(0.3 * 10 * per_tool)
    monkeypatch.setenv("SHIPSKIP_MAX_TOKENS_PER_RUN", str(cap))
    report = ingest(source)
    store = Store.from_settings(get_settings())
    spent = store.query("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) AS n FROM takes")[0]["n"]
    fake_requests = holistic.requests
    checkpointed = len(fake_requests) * 130 - spent
    assert report["reviewed"] and report["over_budget"]
    assert len(report["reviewed"]) + len(report["over_budget"]) == 10
    # Spent (committed and checkpointed) stays within one tool's cost of the cap.
    assert abs(len(fake_requests) * 130 - cap) <= per_tool, (len(fake_requests), cap)
    assert report["budget"].startswith("spent ") and f"of {cap:,} tokens" in report["budget"]
    # Nothing over budget is marked reviewed; its finished takes wait as checkpoints.
    cards = [make_card(slug=f"tool-{i}", name=f"Tool {i}") for i in range(10)]
    assert store.reviewed_among(cards) == set(report["reviewed"])
    assert checkpointed >= 0
    # The next run, with no cap, reviews the rest, asking only for the seats not yet answered.
    monkeypatch.delenv("SHIPSKIP_MAX_TOKENS_PER_RUN")
    before = len(holistic.requests)
    again = ingest(source)
    assert sorted(again["reviewed"]) == sorted(report["over_budget"]) and not again["over_budget"]
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 50
    assert len(holistic.requests) == 50  # each seat asked once over both runs
    assert len(holistic.requests) - before == 50 - before


def test_a_money_cap_with_an_unpriced_model_is_refused_before_any_request(holistic, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_MAX_COST_PER_RUN", "0.01")
    with pytest.raises(SettingsError) as caught:
        ingest(many_cards(isolated, 2))
    assert caught.value.variable == "SHIPSKIP_MAX_COST_PER_RUN" and "fake-model" in str(caught.value)
    assert holistic.requests == []


def test_a_money_cap_stops_the_run_by_its_price(holistic, isolated, monkeypatch):
    own = isolated / "prices.toml"
    write_prices(own, '[models."fake-model"]\ninput = 100.0\noutput = 100.0\n')
    monkeypatch.setenv("SHIPSKIP_PRICES_PATH", str(own))
    per_tool = 5 * 130 * 100 / 1e6
    monkeypatch.setenv("SHIPSKIP_MAX_COST_PER_RUN", str(2 * per_tool))
    report = ingest(many_cards(isolated, 8))
    spent = len(holistic.requests) * 130 * 100 / 1e6
    assert report["over_budget"] and abs(spent - 2 * per_tool) <= per_tool
    assert "of $" in report["budget"]


@pytest.mark.slow
def test_prices_and_cost_views_on_a_lake(lake):
    lake.init()
    costs.sync_prices(lake, get_settings())
    costs.sync_prices(lake, get_settings())  # again: nothing changes, nothing doubles
    assert len([r for r in lake.prices() if r["model"] == "gpt-4o-mini"]) == 1
    card = make_card()
    takes = [
        make_take(p, "ship", 70).model_copy(update={"model": "gpt-4o-mini-2024-07-18"})
        for p in ("builder", "skeptic", "futurist", "creator", "founder")
    ]
    lake.commit_review(lake.begin_run(card), card, takes)
    day = lake.query("SELECT cost_usd, unpriced_takes FROM cost_daily")[0]
    assert day["cost_usd"] == pytest.approx(5 * (10 * 0.15 + 5 * 0.60) / 1e6) and day["unpriced_takes"] == 0
