"""The review_tool flow, run for real by Prefect, against the fake server and the real model."""

from conftest import ROOT, make_take
from fakeopenai import Reply, persona_of, take_json

from flows.review import review_tool
from shipskip.cards import load_card
from shipskip.store import Store

CARD = str(ROOT / "data" / "tools" / "claw-code.yaml")


def stored(isolated):
    return Store(isolated / "shipskip.duckdb")


def test_review_stores_five_takes_in_one_run(fake, isolated):
    out = review_tool(card_path=CARD)
    assert len(out.takes) == 5 and not out.skipped
    rows = stored(isolated).query(
        "SELECT persona, score, verdict, model, prompt_version, prompt_hash, prompt_tokens, run_id FROM takes"
    )
    assert sorted(r["persona"] for r in rows) == ["builder", "creator", "founder", "futurist", "skeptic"]
    assert len({r["run_id"] for r in rows}) == 1
    assert all(r["model"] == "fake-model" and r["prompt_hash"] and r["prompt_tokens"] == 100 for r in rows)
    assert len(fake.requests) == 5


def test_same_card_is_not_reviewed_twice_unless_forced(fake, isolated):
    review_tool(card_path=CARD)
    again = review_tool(card_path=CARD)
    assert again.skipped and len(fake.requests) == 5
    review_tool(card_path=CARD, force=True)
    assert len(fake.requests) == 10
    versions = stored(isolated).query("SELECT DISTINCT version FROM takes ORDER BY 1")
    assert [v["version"] for v in versions] == [1, 2]


def test_a_persona_that_keeps_failing_abstains_and_the_rest_count(fake, isolated):
    def answer(req):
        if persona_of(req) == "skeptic":
            return Reply(content="{not json")
        return Reply(content=take_json("ship", 70, lead="Claw Code"))

    fake.default = answer
    out = review_tool(card_path=CARD)
    assert out.verdict.line == "Ship · 4 ship / 0 skip" and out.verdict.abstain == 1
    row = stored(isolated).query("SELECT verdict, error, attempts FROM takes WHERE persona = 'skeptic'")[0]
    assert row["verdict"] is None and "JSON" in row["error"] and row["attempts"] == 3


def test_an_interrupted_review_does_not_ask_again_for_stored_takes(fake, isolated):
    store = stored(isolated)
    card = load_card(ROOT / "data" / "tools" / "claw-code.yaml")
    run = store.begin_run(card)
    store.checkpoint(run, make_take("builder", "skip", 12, "Claw Code was judged before the crash."))
    store.checkpoint(run, make_take("founder", None, None))
    out = review_tool(card_path=CARD)
    assert out.resumed == 2 and len(fake.requests) == 3
    assert {persona_of(r) for r in fake.requests} == {"skeptic", "futurist", "creator"}
    builder = next(t for t in out.takes if t.persona == "builder")
    assert builder.score == 12


def test_end_to_end_with_the_real_embedded_model(isolated):
    """No base URL: shipskip starts llama.cpp's server with SmolLM2-135M and stops it."""
    import subprocess

    out = review_tool(card_path=str(ROOT / "data" / "tools" / "smollm3.yaml"))
    rows = stored(isolated).query("SELECT persona, verdict, score, take, model, attempts FROM current_takes")
    assert len(rows) == 5
    spoke = [r for r in rows if r["verdict"] is not None]
    assert spoke, "the real model should produce at least one valid take"
    for r in spoke:
        assert 0 <= r["score"] <= 100
        assert (r["verdict"] == "ship") == (r["score"] >= 60)
        assert r["take"].startswith("SmolLM3")
        assert r["model"] == "SmolLM2-135M-Instruct"
    assert out.verdict.ship + out.verdict.skip == len(spoke)
    left = subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True).stdout
    assert left.strip() == "", "the embedded server must be stopped after the review"


def test_a_persona_can_use_its_own_provider_and_model(fake, isolated, monkeypatch):
    from fakeopenai import FakeOpenAI

    with FakeOpenAI() as other:
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__BASE_URL", other.base_url)
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__MODEL", "skeptic-model")
        monkeypatch.setenv("SHIPSKIP_PERSONAS__SKEPTIC__RESPONSE_FORMAT", "json_object")
        review_tool(card_path=CARD)
    assert len(fake.requests) == 4 and len(other.requests) == 1
    assert other.requests[0]["model"] == "skeptic-model"
    assert other.requests[0]["response_format"]["type"] == "json_object"
    assert {r["response_format"]["type"] for r in fake.requests} == {"json_schema"}
    models = {r["persona"]: r["model"] for r in stored(isolated).query("SELECT persona, model FROM takes")}
    assert models["skeptic"] == "skeptic-model" and models["builder"] == "fake-model"
