"""Calibrations per model: stored apart from the prompts, fitted by `shipskip calibrate`, and a
label-free correction (with a marker everywhere) for a model that has none."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, review
from fakeopenai import is_question, persona_of, question_of, take_text, tool_of, yes
from typer.testing import CliRunner

from shipskip import calibrations
from shipskip.calibration_run import answers_path, plan_calibration, run_calibration
from shipskip.calibrations import ModelKey, corrected, generic_calibration
from shipskip.checklist import score_from
from shipskip.cli import app
from shipskip.errors import InputError, UncalibratedModel
from shipskip.eval_figures import checklist_predictions, extreme_share, with_predictions
from shipskip.models import Criterion
from shipskip.personas import load_prompts
from shipskip.publish import write_tool
from shipskip.reference import load_reference
from shipskip.review import model_keys
from shipskip.settings import get_settings
from shipskip.store import Store

CARD = ROOT / "data" / "tools" / "claw-code.yaml"
PANEL = ROOT / "data" / "reference" / "panel.jsonl"
runner = CliRunner()


def first_tools(tmp_path, n):
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(PANEL.read_text().splitlines(True)[:n]))
    return ref


def decisive(reference, content_free_yes=0.98):
    """A provider that answers P(yes) 0.02 or 0.98, as hosted models do: each question the way
    the persona's reference verdict points, with one answer in four the other way (by a hash,
    so the same question on the same card always gets the same answer)."""
    labels = {item.card.name: item.reference for item in reference}
    prompts = load_prompts(ROOT / "prompts")
    sign = {i.question: i.sign for p in prompts.personas.values() for i in p.checklist.items if i.question}
    relevance = {p.checklist.relevance.question for p in prompts.personas.values() if p.checklist.relevance}

    def answer(req):
        if not is_question(req):
            return take_text(req)
        tool, q = tool_of(req), question_of(req)
        if tool in ("N/A", ""):  # the content-free cards
            return yes(content_free_yes)
        ref = labels.get(tool, {}).get(persona_of(req))
        if q in relevance:
            says = ref is None or ref.verdict != "abstain"
        else:
            says = (ref is not None and ref.verdict == "ship") == (sign.get(q, 1) > 0)
            if int(hashlib.sha256(f"{tool}|{q}".encode()).hexdigest(), 16) % 4 == 0:
                says = not says
        return yes(0.98 if says else 0.02)

    return answer


def questions_asked(fake):
    return [(tool_of(r), persona_of(r), question_of(r)) for r in fake.requests if is_question(r)]


# -- the files -------------------------------------------------------------------------


def test_persona_files_hold_no_calibration_and_one_that_does_is_refused(tmp_path):
    import shutil

    for path in (ROOT / "prompts" / "personas").glob("*.yaml"):
        assert "calibration:" not in path.read_text(), path
    copy = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", copy)
    path = copy / "personas" / "skeptic.yaml"
    path.write_text(path.read_text() + "  calibration:\n    base: 50\n")
    with pytest.raises(InputError) as err:
        load_prompts(copy)
    assert err.value.field == "checklist.calibration" and str(path) in str(err.value)


def test_the_packaged_model_is_scored_with_the_shipped_calibration_named_by_its_file_digest():
    settings = get_settings()  # no provider set: the embedded SmolLM2
    prompts = load_prompts(settings.prompts_dir)
    keys = model_keys(settings, prompts, list(prompts.personas))
    key = keys["skeptic"]
    assert key.model == "SmolLM2-135M-Instruct" and key.digest and len(key.digest) == 16
    for name, p in prompts.personas.items():
        entry = calibrations.find_fitted(settings.calibrations_dir, keys[name], name, p.version)
        assert entry is not None and entry.calibration.tools == 101, name
    # The same name with another file's digest (another GGUF) is another model.
    other = ModelKey(key.model, "0" * 16)
    assert calibrations.find_fitted(settings.calibrations_dir, other, "skeptic", "6") is None


def test_a_calibration_file_round_trips_refuses_a_wrong_sign_and_never_picks_its_path(tmp_path):
    prompts = load_prompts(ROOT / "prompts")
    checklist = prompts.personas["builder"].checklist
    key = ModelKey("../../etc/passwd\x00 evil/model")
    assert "/" not in key.file_name and key.file_name.endswith(".json")
    cal = calibrations.Calibration(base=41.5, weights={i.id: 3.0 * i.sign for i in checklist.items})
    entry = calibrations.Entry(persona="builder", prompt_version="7", calibration=cal)
    path = calibrations.write(tmp_path, calibrations.with_entries(None, key, [entry]))
    assert path.parent == tmp_path and list(tmp_path.iterdir()) == [path]
    found = calibrations.find_fitted(tmp_path, key, "builder", "7")
    assert found is not None and found.calibration.base == 41.5
    assert calibrations.find_fitted(tmp_path, key, "builder", "8") is None  # per prompt version
    bad = cal.model_copy(update={"weights": {checklist.items[0].id: -5.0 * checklist.items[0].sign}})
    with pytest.raises(InputError):
        calibrations.apply(checklist, bad, str(path))


# -- the label-free correction -----------------------------------------------------------


def test_contextual_correction_divides_by_the_content_free_answer():
    assert corrected(0.98, 0.98) == 0.5  # what the model says of any card says nothing
    assert corrected(0.7, 0.5) == 0.7  # an unbiased model is left as it is
    assert corrected(0.3, 0.1) > 0.7 and corrected(None, 0.5) is None and corrected(0.4, None) == 0.4


def test_generic_weights_spread_decisive_answers_without_reaching_0_or_100():
    import random

    prompts = load_prompts(ROOT / "prompts")
    rng = random.Random(7)
    for name, p in prompts.personas.items():
        ref = calibrations.reference_calibration(name, p.version)
        cal = generic_calibration(p.checklist, ref, 70.0)
        assert all(cal.weights[i.id] * i.sign > 0 for i in p.checklist.items)
        # Sizes follow the shipped ranking, not its magnitudes: the heaviest item is 3x the lightest.
        sizes = sorted({abs(w) for w in cal.weights.values()})
        assert len(sizes) >= 2 and max(sizes) <= 3.01 * min(sizes)
        checklist = calibrations.apply(p.checklist, cal, "generic")
        scores = []
        for _ in range(200):
            crit = [
                Criterion(id=i.id, label=i.id, weight=0, p_yes=rng.choice([0.02, 0.98]))
                for i in checklist.items
            ]
            scores.append(score_from(checklist, crit))
        assert min(scores) > 0 and max(scores) < 100 and max(scores) - min(scores) >= 30, name


@pytest.mark.slow
def test_an_uncalibrated_model_is_corrected_by_its_bias_and_says_so_everywhere(fake, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_MODEL", "hosted-model")
    fake.default = decisive(load_reference(PANEL), content_free_yes=0.9)
    out = review(CARD)
    spoke = [t for t in out.takes if not t.abstained]
    assert spoke and all(
        t.uncalibrated and t.calibration_note == "uncalibrated for hosted-model"
        for t in out.takes
        if t.criteria
    )
    # Every question was asked on the content-free cards once, and answers were divided by it.
    free = [q for q in questions_asked(fake) if q[0] in ("N/A", "")]
    prompts = load_prompts(ROOT / "prompts")
    n_questions = sum(
        len([i for i in p.checklist.items if i.question]) + (p.checklist.relevance is not None)
        for p in prompts.personas.values()
    )
    assert len(free) == 2 * n_questions
    asked = [c for t in spoke for c in t.criteria if c.source == "logprobs"]
    assert {c.p_yes for c in asked} <= {corrected(0.98, 0.9), corrected(0.02, 0.9)}
    # The marker is stored, shown by `show`, on the page and in panel_verdicts.
    store = Store.from_settings(get_settings())
    row = store.query("SELECT calibration_note FROM panel_verdicts WHERE slug = 'claw-code'")[0]
    assert row["calibration_note"] == "uncalibrated for hosted-model"
    takes = store.query("SELECT uncalibrated, calibration FROM current_takes WHERE slug = 'claw-code'")
    assert any(t["uncalibrated"] and "contextual" in t["calibration"] for t in takes)
    shown = runner.invoke(app, ["show", "claw-code"])
    assert shown.exit_code == 0 and "uncalibrated for hosted-model" in shown.output
    write_tool(store, get_settings().out_dir, "claw-code")
    html = (isolated / "out" / "tools" / "claw-code.html").read_text()
    md = (isolated / "out" / "tools" / "claw-code.md").read_text()
    assert "uncalibrated for hosted-model" in html and "uncalibrated for hosted-model" in md
    # The bias is kept with the model: the next review asks no content-free question.
    fake.requests.clear()
    review(CARD, force=True)
    assert not [q for q in questions_asked(fake) if q[0] in ("N/A", "")]


@pytest.mark.slow
def test_a_calibrated_model_says_which_calibration_scored_it(fake, isolated):
    out = review(CARD)
    spoke = [t for t in out.takes if t.criteria]
    assert spoke and all(not t.uncalibrated and t.calibration.startswith("fake-model: ") for t in spoke)
    shown = runner.invoke(app, ["show", "claw-code"])
    assert shown.exit_code == 0 and "Calibrations: fake-model: builder@" in shown.output
    assert "uncalibrated" not in shown.output
    assert not [q for q in questions_asked(fake) if q[0] in ("N/A", "")]
    row = Store.from_settings(get_settings()).query("SELECT calibration_note FROM panel_verdicts")[0]
    assert row["calibration_note"] is None


@pytest.mark.slow
def test_require_calibration_refuses_an_uncalibrated_model_before_any_request(fake, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_MODEL", "hosted-model")
    monkeypatch.setenv("SHIPSKIP_REQUIRE_CALIBRATION", "1")
    with pytest.raises(UncalibratedModel) as err:
        review(CARD)
    assert err.value.model == "hosted-model" and fake.requests == []
    assert Store.from_settings(get_settings()).query("SELECT count(*) AS n FROM takes")[0]["n"] == 0
    # A calibrated model goes through.
    monkeypatch.setenv("SHIPSKIP_MODEL", "fake-model")
    assert review(CARD).takes


# -- shipskip calibrate ------------------------------------------------------------------


def per_tool_questions(prompts):
    return sum(
        len([i for i in p.checklist.items if i.question]) + (p.checklist.relevance is not None)
        for p in prompts.personas.values()
    )


@pytest.mark.slow
def test_calibrate_asks_first_resumes_after_a_kill_without_asking_anything_twice(
    fake, isolated, tmp_path, monkeypatch
):
    monkeypatch.setenv("SHIPSKIP_MODEL", "decisive-model")
    ref = first_tools(tmp_path, 4)
    fake.default = decisive(load_reference(ref))
    settings = get_settings()
    plan = plan_calibration(settings, ref)
    assert plan.requests == 4 * per_tool_questions(load_prompts(settings.prompts_dir))
    assert plan.prompt_tokens > 0 and not plan.resuming

    # It says what it will spend and asks; told no, it spends nothing.
    res = runner.invoke(app, ["calibrate", str(ref)], input="n\n")
    assert res.exit_code == 1 and f"{plan.requests} requests" in res.output and "Go on?" in res.output
    assert fake.requests == [] and not answers_path(settings, ModelKey("decisive-model")).exists()

    # Killed midway: the answers so far are stored, and no calibration is written.
    seats = []

    def stop(step, slug, persona):
        seats.append(slug)
        if len(seats) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_calibration(settings, ref, on_persona=stop)
    first = len(fake.requests)
    assert 0 < first < plan.requests
    assert calibrations.read(settings.calibrations_dir, ModelKey("decisive-model")) is None
    again = plan_calibration(settings, ref)
    assert again.resuming and again.requests == plan.requests - first and again.answered == first

    # Run again: a started calibration resumes without asking, and asks no question twice.
    res = runner.invoke(app, ["calibrate", str(ref)], input="")
    assert res.exit_code == 0, res.output
    asked = questions_asked(fake)
    assert len(asked) == len(set(asked)) == plan.requests
    assert "out-of-fold" in res.output and "scores at 0 or 100" in res.output
    entry = calibrations.find_fitted(settings.calibrations_dir, ModelKey("decisive-model"), "skeptic", "6")
    assert entry is not None and entry.calibration.tools == 4 and entry.figures["tools"] == 4


@pytest.mark.slow
def test_calibrate_fits_a_decisive_model_so_its_scores_spread(fake, isolated, tmp_path, monkeypatch):
    """The issue's target: after `shipskip calibrate` on a provider that answers P(yes) 0.02 or
    0.98, at most 5% of that model's scores sit at 0 or 100, out of fold and with the fit."""
    monkeypatch.setenv("SHIPSKIP_MODEL", "decisive-model")
    ref = first_tools(tmp_path, 12)
    fake.default = decisive(load_reference(ref))
    settings = get_settings()
    out = run_calibration(settings, ref)
    assert out.written and all(n.startswith("decisive-model: ") for n in out.calibrations.values())
    figures = out.summary
    assert figures["out_of_fold"]["extreme_share"] <= 0.05
    assert figures["persona_files"]["extreme_share"] <= 0.05
    # Each seat's entry records its out-of-fold figures: what decides whether it counts.
    for persona in ("builder", "futurist"):
        entry = calibrations.find_fitted(settings.calibrations_dir, ModelKey("decisive-model"), persona,
                                         load_prompts(settings.prompts_dir).personas[persona].version)  # fmt: skip
        f = entry.figures
        assert f["tools"] == 12 and f["kappa"] == figures["out_of_fold"]["seats"][persona]["kappa"]
        assert len(f["kappa_interval"]) == 2 and "bootstrap" in f["interval"] and f["ship_curve"]["slope"] > 0
    # SmolLM2's weights on the same answers pile them at 0 and 100 (what this replaces).
    prompts = load_prompts(settings.prompts_dir)
    answers = _answers_as_results(settings, ref)
    shipped = calibrations.load_file(next(calibrations.shipped_dir().glob("*.json"))).key
    smol, _ = calibrations.calibrated_prompts(
        prompts, settings.calibrations_dir, dict.fromkeys(prompts.personas, shipped), 70.0
    )
    assert extreme_share(with_predictions(answers, checklist_predictions(smol, answers, oof=False))) > 0.15
    # Reviews by this model now use its own calibration, and ask no content-free question.
    fake.requests.clear()
    review_out = review(CARD)
    assert all(t.calibration.startswith("decisive-model: ") for t in review_out.takes if t.criteria)
    assert all(not t.uncalibrated for t in review_out.takes)
    assert not [q for q in questions_asked(fake) if q[0] in ("N/A", "")]


def _answers_as_results(settings, ref):
    from shipskip.calibration_run import calibration_results

    return calibration_results(settings, ref, ModelKey("decisive-model"))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 90 answers from the real model, twice started: minutes on a busy machine
def test_calibrate_on_the_embedded_model_resumes_after_a_kill(isolated, tmp_path):
    """The real SmolLM2 through `shipskip calibrate --limit 2 --yes`, killed once it has stored
    a few answers, then run again: it finishes, asks nothing twice, and writes a calibration for
    the packaged model's file."""
    env = {**os.environ, "SHIPSKIP_EMBEDDED_THREADS": "1"}
    cmd = [sys.executable, "-m", "shipskip", "calibrate", str(PANEL), "--limit", "2", "--yes"]
    settings = get_settings()
    prompts = load_prompts(settings.prompts_dir)
    key = model_keys(settings, prompts, ["skeptic"])["skeptic"]
    path = answers_path(settings, key)
    child = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (not path.is_file() or len(path.read_text().splitlines()) < 3):
            assert child.poll() is None, "calibrate ended before it was killed"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    before = len(path.read_text().splitlines())
    assert before >= 3
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip().endswith("}")]
    seen = [(a["slug"], a["persona"], a["item"]) for a in lines]
    assert len(seen) == len(set(seen)) == plan_calibration(settings, PANEL, 2).answered
    entry = calibrations.find_fitted(
        settings.calibrations_dir, key, "skeptic", prompts.personas["skeptic"].version
    )
    assert entry is not None and entry.calibration.tools == 2


# -- which seats count ---------------------------------------------------------------------


def test_a_seat_below_the_kappa_line_on_its_model_is_written_and_shown_but_not_counted(fake, isolated):
    settings = get_settings()

    def measured(data):
        figures = {"tools": 101, "ship_curve": {"slope": 0.12, "intercept": 0.0}}
        return data.model_copy(update={"entries": [
            e.model_copy(update={"figures": {**figures, "kappa": -0.03 if e.persona == "futurist" else 0.45}})
            for e in data.entries
        ]})  # fmt: skip

    calibrations.update(settings.calibrations_dir, ModelKey("fake-model"), measured)
    out = review(CARD)
    futurist = next(t for t in out.takes if t.persona == "futurist")
    assert futurist.verdict is not None and futurist.text and not futurist.counted
    assert futurist.not_counted_reason == (
        "not counted: on this model the Futurist's lens has shown no signal (kappa \u22120.03 on 101 tools)"
    )
    spoke = [t for t in out.takes if t.verdict is not None]
    assert all(t.counted and t.not_counted_reason is None for t in spoke if t.persona != "futurist")
    # Each spoken take's P(ship) is read off its seat's curve at its score.
    assert all(t.p_ship is not None and (t.p_ship >= 0.5) == (t.verdict == "ship") for t in spoke)
    store = Store.from_settings(settings)
    stored = {t.persona: t for t in store.current_takes("claw-code")}
    assert (
        not stored["futurist"].counted
        and stored["futurist"].not_counted_reason == futurist.not_counted_reason
    )
    row = store.query("SELECT ship, skip, not_counted, flip_chance FROM panel_verdicts")[0]
    assert row["not_counted"] == 1 and row["ship"] + row["skip"] == len(spoke) - 1
    assert row["flip_chance"] is not None
    page = write_tool(store, settings.out_dir, "claw-code")[0].read_text()
    assert "lens has shown no signal (kappa \u22120.03 on 101 tools)" in page


def test_the_shipped_calibration_records_each_seats_out_of_fold_figures():
    """Filled from the committed answers (bench/shipped_figures.py): on SmolLM2-135M the
    Futurist has shown no signal and does not count; the Builder does."""
    data = calibrations.load_file(next(calibrations.shipped_dir().glob("*.json")))
    figures = {e.persona: e.figures for e in data.entries}
    for f in figures.values():
        assert f["tools"] == 101 and len(f["kappa_interval"]) == 2 and f["ship_curve"]["slope"] >= 0
        assert f["kappa_interval"][0] <= f["kappa"] <= f["kappa_interval"][1]
    standing = {p: calibrations.persona_standing(f, p.title(), 0.2) for p, f in figures.items()}
    # A counted seat's P(ship) rises with its score; the Futurist's scores run against its
    # labels, so its curve is flat.
    assert all(figures[p]["ship_curve"]["slope"] > 0 for p, (counts, _) in standing.items() if counts)
    assert figures["futurist"]["ship_curve"]["slope"] == 0
    assert standing["futurist"][0] is False and "kappa \u22120.03 on 101 tools" in standing["futurist"][1]
    assert standing["builder"] == (True, None)


def test_a_ship_curve_rises_with_the_score_and_is_flat_where_scores_run_against_the_labels():
    from shipskip.calibrate import ship_chance, ship_curve

    scores = [30, 40, 45, 55, 65, 70, 80, 90]
    curve = ship_curve(scores, [False, False, False, True, False, True, True, True])
    assert curve["slope"] > 0 and ship_chance(curve, 90) > 0.5 > ship_chance(curve, 30)
    backwards = ship_curve(scores, [True, True, True, False, True, False, False, False])
    assert backwards["slope"] == 0 and ship_chance(backwards, 90) == ship_chance(backwards, 30) == 0.5
    assert ship_curve(scores, [True] * 7 + [False]) is None  # one skip: nothing to tell apart
