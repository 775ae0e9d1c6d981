import shutil

import pytest
import yaml
from conftest import ROOT, ingest, rerun
from fakeopenai import Reply, lead_of, persona_of, take_json

from shipskip.store import Store


def inbox(tmp_path, *names):
    d = tmp_path / "inbox"
    d.mkdir(exist_ok=True)
    for n in names:
        shutil.copy(ROOT / "data" / "tools" / n, d / n)
    return d


@pytest.mark.slow
def test_new_tools_are_reviewed_once_and_again_when_changed(holistic, tmp_path):
    fake = holistic
    d = inbox(tmp_path, "smollm3.yaml", "pagerduck.yaml")
    (d / "bad.yaml").write_text("name: Bad\n")
    first = ingest(str(d))
    assert sorted(first["reviewed"]) == ["pagerduck", "smollm3"] and len(first["refused"]) == 1
    assert len(fake.requests) == 10
    second = ingest(str(d))
    assert second["reviewed"] == [] and sorted(second["unchanged"]) == ["pagerduck", "smollm3"]
    assert len(fake.requests) == 10
    card = d / "smollm3.yaml"
    card.write_text(card.read_text().replace("consumer GPU", "consumer GPU or a phone"))
    third = ingest(str(d))
    assert third["reviewed"] == ["smollm3"] and len(fake.requests) == 15
    store = Store(tmp_path / "shipskip.duckdb")
    hashes = store.query("SELECT count(DISTINCT content_hash) AS n FROM tool_versions WHERE slug = 'smollm3'")
    assert hashes[0]["n"] == 2


@pytest.mark.slow
def test_rerun_keeps_history_and_can_flip_the_verdict(holistic, tmp_path):
    fake = holistic
    fake.default = lambda req: (
        Reply(
            content=take_json(
                "skip" if persona_of(req) in ("skeptic", "futurist") else "ship",
                30 if persona_of(req) in ("skeptic", "futurist") else 75,
                lead="SmolLM3",
            )
        )
        if persona_of(req) != "founder"
        else Reply(content=take_json("abstain"))
    )
    ingest(str(inbox(tmp_path, "smollm3.yaml")))
    store = Store(tmp_path / "shipskip.duckdb")
    from shipskip.panel import aggregate

    assert aggregate(store.current_takes("smollm3")).line == "Mixed · 2 ship / 2 skip"
    fake.script = [
        Reply(content=take_json("ship", 88, "flips after a second look at the licence.", lead="SmolLM3"))
    ]
    out = rerun("smollm3", "skeptic", "new evidence", model="other-model")
    assert out.score == 88 and fake.requests[-1]["model"] == "other-model"
    assert aggregate(store.current_takes("smollm3")).line == "Ship · 3 ship / 1 skip"
    hist = store.history("smollm3", "skeptic")
    assert [(h["version"], h["score"], h["delta"]) for h in hist] == [(1, 30, None), (2, 88, 58)]
    assert hist[1]["reason"] == "new evidence" and hist[1]["model"] == "other-model"
    run = store.query("SELECT label, ship, skip FROM runs WHERE kind = 'rerun'")[0]
    assert (run["label"], run["ship"], run["skip"]) == ("Ship", 3, 1)


@pytest.mark.slow
def test_a_rerun_reason_is_stored_without_control_characters_or_refused(holistic, tmp_path):
    import pytest

    from shipskip.errors import InputError

    ingest(str(inbox(tmp_path, "smollm3.yaml")))
    store = Store(tmp_path / "shipskip.duckdb")
    runs = store.query("SELECT count(*) AS n FROM runs")[0]["n"]
    for raw in ("\x1b[2J\x07 \u202e\u2066", "  \u200b\x85 ", "a\x07"):
        with pytest.raises(InputError) as e:
            rerun("smollm3", "skeptic", raw)
        assert e.value.field == "--reason"
    assert store.query("SELECT count(*) AS n FROM runs")[0]["n"] == runs  # nothing stored
    rerun("smollm3", "skeptic", "licence \x1b[31mclarified\x1b[0m\x07 [/x] \u202eok\x9b")
    assert store.history("smollm3", "skeptic")[-1]["reason"] == "licence clarified [/x] ok"


def test_a_card_empty_once_normalised_is_refused_and_the_rest_of_the_ingest_goes_on(holistic, tmp_path):
    import json

    from shipskip.publish import current_week, write_digest

    d = inbox(tmp_path, "smollm3.yaml")
    ghost = yaml.safe_load((ROOT / "data" / "tools" / "pagerduck.yaml").read_text())
    (d / "ghost.json").write_text(json.dumps({**ghost, "name": "   \u200b "}))
    report = ingest(str(d))
    assert report["reviewed"] == ["smollm3"] and len(report["refused"]) == 1
    assert "ghost.json: name: holds no visible text" in report["refused"][0]
    store = Store(tmp_path / "shipskip.duckdb")
    assert [r["slug"] for r in store.query("SELECT slug FROM tools")] == ["smollm3"]
    _, panels = write_digest(store, tmp_path / "out", current_week())
    assert [p.card.slug for p in panels] == ["smollm3"]


def test_deployments_in_prefect_yaml_load():
    import importlib

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names == {
        "daily-new-tools",
        "review-tool",
        "rerun-persona",
        "render-comparison",
        "weekly-maintenance",
        "calibrate-model",
        "weekly-digest",
        "publish-site",
        "label-seat",
    }
    for dep in spec["deployments"]:
        module, func = dep["entrypoint"].split(":")
        fl = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
        fl.validate_parameters(dep.get("parameters", {}))
    daily = next(d for d in spec["deployments"] if d["name"] == "daily-new-tools")
    assert daily["schedules"][0]["timezone"] == "UTC"
    weekly = next(d for d in spec["deployments"] if d["name"] == "weekly-digest")
    assert weekly["schedules"][0] == {"cron": "0 7 * * 1", "timezone": "UTC", "active": True}  # Mondays 07:00


def test_deployment_entrypoints_load_by_file_path_as_a_worker_loads_them():
    """A worker loads `flows/x.py:fn` by its path, as a script outside any package: the flows'
    imports of one another (relative, so that the wheel's `shipskip_flows` works too) still
    resolve there."""
    import subprocess
    import sys

    code = (
        "import yaml; from prefect.utilities.importtools import import_object\n"
        "for d in yaml.safe_load(open('prefect.yaml'))['deployments']:\n"
        "    import_object(d['entrypoint']).validate_parameters(d.get('parameters', {}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_llm_concurrency_bounds_calls_in_flight(holistic, tmp_path, monkeypatch):
    fake = holistic
    from fakeopenai import PeakInFlight

    monkeypatch.setenv("SHIPSKIP_LLM_CONCURRENCY", "2")
    slow = PeakInFlight(lambda req: Reply(content=take_json(lead=lead_of(req))), 0.1)
    fake.default = slow
    ingest(str(inbox(tmp_path, "smollm3.yaml", "pagerduck.yaml")))
    assert len(fake.requests) == 10
    assert slow.peak == 2


@pytest.mark.slow
def test_checklist_rerun_keeps_the_old_take_and_stores_new_criteria(fake, tmp_path):
    from fakeopenai import is_question, take_text, yes

    fake.default = lambda req: yes(0.3) if is_question(req) else take_text(req)
    ingest(str(inbox(tmp_path, "smollm3.yaml")))
    store = Store(tmp_path / "shipskip.duckdb")
    before = next(t for t in store.current_takes("smollm3") if t.persona == "skeptic")
    fake.default = lambda req: yes(0.9) if is_question(req) else take_text(req)
    rerun("smollm3", "skeptic", "prompt v3")
    after = next(t for t in store.current_takes("smollm3") if t.persona == "skeptic")
    assert after.criteria and all(c.p_yes == 0.9 for c in after.criteria if c.source != "card")
    assert before.criteria and all(c.p_yes == 0.3 for c in before.criteria if c.source != "card")
    hist = store.history("smollm3", "skeptic")
    assert [h["version"] for h in hist] == [1, 2] and hist[1]["reason"] == "prompt v3"


def test_an_ingest_reviews_at_most_the_cap_and_leaves_the_rest_for_the_next_run(
    holistic, tmp_path, monkeypatch
):
    monkeypatch.setenv("SHIPSKIP_MAX_NEW_PER_RUN", "1")
    d = inbox(tmp_path, "smollm3.yaml", "pagerduck.yaml")
    first = ingest(str(d))
    assert len(first["reviewed"]) == 1 and len(first["deferred"]) == 1
    second = ingest(str(d))
    assert second["reviewed"] == first["deferred"] and second["deferred"] == []
    assert sorted(second["unchanged"]) == first["reviewed"]


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_good_take_and_fails(fake, tmp_path, monkeypatch):
    import pytest
    from fakeopenai import is_question, take_text, yes

    from shipskip.errors import ShipskipError

    fake.default = lambda req: yes(0.6) if is_question(req) else take_text(req)
    ingest(str(inbox(tmp_path, "smollm3.yaml")))
    store = Store(tmp_path / "shipskip.duckdb")
    before = next(t for t in store.current_takes("smollm3") if t.persona == "skeptic")
    fake.default = Reply(status=503)
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "1")
    with pytest.raises(ShipskipError, match="current take is kept"):
        rerun("smollm3", "skeptic", "try again")
    after = next(t for t in store.current_takes("smollm3") if t.persona == "skeptic")
    assert after == before
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'running'")[0]["n"] == 0
    history = store.history("smollm3", "skeptic")
    assert [(h["version"], h["status"]) for h in history] == [(1, "complete"), (None, "failed")]
    assert history[1]["reason"] == "try again" and "503" in history[1]["error"]
    # The next successful rerun is version 2, and its change is measured from version 1.
    fake.default = lambda req: yes(0.9) if is_question(req) else take_text(req)
    monkeypatch.setenv("SHIPSKIP_MAX_ATTEMPTS", "3")
    rerun("smollm3", "skeptic", "second try")
    history = store.history("smollm3", "skeptic")
    assert [h["version"] for h in history] == [1, None, 2]
    assert history[2]["delta"] == history[2]["score"] - history[0]["score"]


def test_a_run_stores_each_persona_once(holistic, tmp_path):
    import duckdb
    import pytest

    ingest(str(inbox(tmp_path, "smollm3.yaml")))
    store = Store(tmp_path / "shipskip.duckdb")
    copy = "INSERT INTO takes SELECT * REPLACE ('another-id' AS take_id, 99 AS version) FROM takes LIMIT 1"
    with pytest.raises(duckdb.ConstraintException), store.transaction() as con:
        con.execute(copy)
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == 5


def test_a_card_with_another_tools_slug_is_refused_not_merged(holistic, tmp_path):
    d = inbox(tmp_path, "smollm3.yaml")
    ingest(str(d))
    store = Store(tmp_path / "shipskip.duckdb")
    before = store.query("SELECT count(*) AS n FROM takes")[0]["n"]
    impostor = yaml.safe_load((d / "smollm3.yaml").read_text())
    impostor["name"] = "Totally Different Model"
    (d / "smollm3.yaml").write_text(yaml.safe_dump(impostor))
    report = ingest(str(d))
    assert report["reviewed"] == [] and len(report["refused"]) == 1
    assert "already belongs to 'SmolLM3'" in report["refused"][0]
    assert store.tool("smollm3").name == "SmolLM3"
    assert store.query("SELECT count(*) AS n FROM takes")[0]["n"] == before


def _held_elsewhere(store: Store, slug: str) -> None:
    """As if a live process on another machine had started reviewing `slug` just now."""
    from conftest import make_card

    run = store.begin_run(make_card(slug=slug, name="Held"))
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET owner = 'otherhost:123', heartbeat_at = now()::TIMESTAMP WHERE run_id = ?",
            [run.run_id],
        )


@pytest.mark.slow
def test_an_ingest_comes_back_to_a_tool_another_process_holds(holistic, tmp_path, monkeypatch):
    import threading
    import time

    d = inbox(tmp_path, "smollm3.yaml", "pagerduck.yaml")
    store = Store(tmp_path / "shipskip.duckdb")
    _held_elsewhere(store, "pagerduck")

    # Still held when the wait runs out: left for the next run, and said so.
    monkeypatch.setenv("SHIPSKIP_BUSY_WAIT_S", "1.2")
    first = ingest(str(d))
    assert first["reviewed"] == ["smollm3"] and first["busy"] == ["pagerduck"]

    # Its holder goes quiet for longer than a lease while this ingest waits: taken over.
    def holder_dies():
        time.sleep(0.3)
        with store.transaction() as con:
            con.execute(
                "UPDATE runs SET heartbeat_at = heartbeat_at - INTERVAL 1 DAY WHERE slug = 'pagerduck'"
            )

    monkeypatch.setenv("SHIPSKIP_BUSY_WAIT_S", "30")
    dying = threading.Thread(target=holder_dies)
    dying.start()
    second = ingest(str(d))
    dying.join()
    assert second["reviewed"] == ["pagerduck"] and second["busy"] == []
    assert store.query("SELECT count(*) AS n FROM current_takes WHERE slug = 'pagerduck'")[0]["n"] == 5


@pytest.mark.slow
def test_a_dead_provider_stops_the_ingest_and_leaves_every_tool_for_the_next_run(fake, tmp_path, monkeypatch):
    """One breaker for the run: the seats of every tool in flight fail at once when it opens,
    no tool is marked reviewed, and the next ingest reviews them all."""
    import time

    import pytest
    from fakeopenai import standard_answer

    from shipskip.errors import ProviderDown
    from shipskip.settings import get_settings

    d = inbox(tmp_path, "smollm3.yaml", "pagerduck.yaml", "claw-code.yaml")
    monkeypatch.setenv("SHIPSKIP_TIMEOUT_S", "3")
    settings = get_settings()
    fake.default = Reply(content="Yes", trickle_s=0.4)
    started = time.monotonic()
    with pytest.raises(ProviderDown):
        ingest(str(d))
    took = time.monotonic() - started
    # The whole ingest, not only each tool, within the bound for one tool.
    assert took <= 2 * settings.timeout_s * settings.max_attempts, took
    assert len(fake.requests) <= settings.breaker_failures + settings.llm_concurrency
    store = Store(tmp_path / "shipskip.duckdb")
    for table in ("takes", "tools", "take_checkpoints"):
        assert store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0, table
    fake.default = standard_answer
    assert sorted(ingest(str(d))["reviewed"]) == ["claw-code", "pagerduck", "smollm3"]
