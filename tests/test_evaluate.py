import json

import pytest
from conftest import ROOT, compare, review, shipped_prompts
from fakeopenai import Reply, lead_of, persona_of, take_json

from shipskip.errors import InputError
from shipskip.evaluate import run_holistic_eval
from shipskip.reference import load_reference
from shipskip.settings import get_settings
from shipskip.store import Store


def test_shipped_reference_set_loads():
    items = load_reference(ROOT / "data" / "reference" / "panel.jsonl")
    assert len(items) >= 8
    assert all(len(i.reference) >= 3 for i in items)


def test_bad_reference_line_names_line_and_field(tmp_path):
    good = (ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines()[0]
    bad = json.loads(good)
    bad["reference"]["builder"] = {"verdict": "maybe"}
    f = tmp_path / "ref.jsonl"
    f.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as e:
        load_reference(f)
    assert ":2:" in str(e.value) and "builder" in str(e.value)


def test_eval_reports_agreement_and_stability_and_stores_them(holistic, isolated, tmp_path):
    fake = holistic
    lines = (ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines()[:3]
    ref = tmp_path / "ref.jsonl"
    ref.write_text("\n".join(lines) + "\n")
    refs = [json.loads(ln) for ln in lines]
    by_name = {r["card"]["name"]: r["reference"] for r in refs}
    draws = {}

    def answer(req):
        # Echo the reference exactly, except the skeptic, whose verdict alternates between draws.
        persona, name = persona_of(req), lead_of(req)
        label = by_name[name].get(persona, {"verdict": "ship", "score": 70})
        if persona == "skeptic":
            draws[name] = draws.get(name, 0) + 1
            return Reply(
                content=take_json(
                    "ship" if draws[name] % 2 else "skip", 70 if draws[name] % 2 else 30, lead=name
                )
            )
        if label["verdict"] == "abstain":
            return Reply(content=take_json("abstain"))
        return Reply(content=take_json(label["verdict"], label["score"], lead=name))

    fake.default = answer
    seen, phases = [], []
    out = run_holistic_eval(
        get_settings(), ref, 3, on_persona=lambda *a: seen.append(a), on_phase=lambda *a: phases.append(a)
    )
    # Progress: one phase sized to every seat of every tool, advanced once per seat.
    assert phases == [("Drawing 3 takes per persona", 15)] and len(seen) == 15 and seen[0][0] == "drew"
    s = out.summary
    assert s["builder"]["verdict_agreement"] == 1.0 and s["builder"]["mae"] == 0
    assert s["builder"]["flip_rate"] == 0 and s["skeptic"]["flip_rate"] == round(1 / 3, 3)
    assert s["overall"]["valid_first_attempt"] == 1.0
    assert len(fake.requests) == 3 * 5 * 3
    store = Store(isolated / "shipskip.duckdb")
    assert store.query("SELECT count(*) AS n FROM eval_items")[0]["n"] == 15
    stored = json.loads(store.query("SELECT summary FROM eval_runs")[0]["summary"])
    assert stored == json.loads(json.dumps(s))


def test_self_consistency_setting_draws_k_takes(holistic, isolated, monkeypatch):
    fake = holistic
    monkeypatch.setenv("SHIPSKIP_SAMPLES", "3")
    seen: dict[str, int] = {}

    def answer(req):
        # Each persona's draws score 80, 40, 65 in turn (personas run concurrently).
        p = persona_of(req)
        seen[p] = seen.get(p, 0) + 1
        score = [80, 40, 65][(seen[p] - 1) % 3]
        return Reply(content=take_json("ship" if score >= 60 else "skip", score, lead=lead_of(req)))

    fake.default = answer
    out = review(str(ROOT / "data" / "tools" / "smollm3.yaml"))
    assert len(fake.requests) == 15
    t = out.takes[0]
    assert (t.samples, t.score, t.score_spread, t.verdict_flips) == (3, 65, 40, round(1 / 3, 3))


@pytest.mark.slow
def test_comparison_order_check_passes_for_stored_panels(holistic, isolated):
    from shipskip.publish import compare_both_orders, verdicts_by_tool

    review(str(ROOT / "data" / "tools" / "smollm3.yaml"))
    review(str(ROOT / "data" / "tools" / "claw-code.yaml"))
    store = Store(isolated / "shipskip.duckdb")
    ab, ba = (verdicts_by_tool(p) for p in compare_both_orders(store, "claw-code", "smollm3"))
    assert ab == ba == {"Claw Code": "Ship · 5 ship / 0 skip", "SmolLM3": "Ship · 5 ship / 0 skip"}
    # Asked in either order, the pair has the one page the site links to.
    assert compare("smollm3", "claw-code").endswith("claw-code-vs-smollm3.html")


@pytest.mark.slow
def test_the_committed_model_answers_refit_offline_with_card_facts_read_afresh(isolated, tmp_path):
    """`shipskip eval REF --answers data/reference/answers-smollm2-135m.jsonl` needs no model."""
    from shipskip.evaluate import run_checklist_eval
    from shipskip.settings import get_settings

    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join((ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines(True)[:12]))
    answers = ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl"
    out = run_checklist_eval(get_settings(), ref, answers_from=str(answers))
    oof = out.summary["out_of_fold"]
    assert oof["tools"] == 12 and set(oof["seats"]) == {
        "builder",
        "skeptic",
        "futurist",
        "creator",
        "founder",
    }
    lo, hi = oof["intervals"]["panel_ship_pct_spearman"]
    assert lo <= oof["panel_ship_pct_spearman"] <= hi
    rows = Store(isolated / "shipskip.duckdb").eval_items(out.eval_id)
    assert len(rows) == 60
    sources = {c["source"] for r in rows for c in r["criteria"]}
    assert sources == {"logprobs", "card"}
    explained = out.summary["explanations"]
    assert explained["takes"] > 0 and explained["two_sides"] == explained["lacking_what_card_states"] == 0


@pytest.mark.slow
def test_explanations_on_the_reference_cards_never_contradict_a_card_fact():
    """The 101 reference cards with the embedded model's stored answers and the persona files'
    weights: no take lists one thing the card settles on two sides, or lists as lacking what
    the card's facts assert. Explained the old way (against each take's own mean answer, with no
    settling fact), the same answers gave many such takes."""
    from shipskip.checklist import explanation_faults
    from shipskip.eval_figures import checklist_predictions, explanation_figures, with_predictions
    from shipskip.reference import load_reference, stored_answers

    items = load_reference(ROOT / "data" / "reference" / "panel.jsonl")
    prompts = shipped_prompts()
    answers = str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    results = stored_answers(None, answers, items, prompts)
    spoke = with_predictions(results, checklist_predictions(prompts, results, oof=False))
    figures = explanation_figures(prompts, spoke, {i.card.slug: i.card for i in items})
    assert len(items) == 101 and figures["takes"] > 250
    assert figures == {**figures, "two_sides": 0, "lacking_what_card_states": 0, "contradicts_card": 0}

    def the_old_way(criteria):
        given = [c.p_yes for c in criteria if c.source != "card" and c.p_yes is not None]
        mean = sum(given) / len(given)
        return [c if c.source == "card" else c.model_copy(update={"baseline": mean, "settled_by": None})
                for c in criteria]  # fmt: skip

    old = [
        explanation_faults(prompts.personas[r.persona].checklist, the_old_way(r.criteria))
        for r in spoke if r.verdict in ("ship", "skip")
    ]  # fmt: skip
    assert sum("two_sides" in f for f in old) > 10 and sum("lacking_what_card_states" in f for f in old) > 10


def _answered(slug, persona, ref, got):
    from shipskip.reference import ItemResult

    return ItemResult(
        slug=slug, persona=persona, ref_verdict=ref, ref_score=None, verdict=got, score=None,
        first_attempt_valid=True, grounded=None, verdict_flips=0.0, score_spread=None, take=None,
    )  # fmt: skip


@pytest.mark.slow
def test_bootstrap_intervals_are_exact_for_a_perfect_panel_and_bracket_an_imperfect_one():
    from shipskip.eval_figures import intervals, panel_figures, persona_figures

    personas = ["builder", "skeptic", "futurist"]
    # Twelve tools whose reference panels run from all-skip to all-ship.
    refs = [["ship" if j < k % 4 else "skip" for j in range(3)] for k in range(12)]
    perfect = [
        _answered(f"t{k}", p, r, r) for k, row in enumerate(refs) for p, r in zip(personas, row, strict=True)
    ]
    ci = intervals(perfect, draws=200)
    assert ci["draws"] == 200
    assert ci["builder_agreement"] == [1.0, 1.0] and ci["ship_balanced_accuracy"] == [1.0, 1.0]
    assert ci["panel_ship_pct_spearman"] == [1.0, 1.0]

    # The skeptic gets every third tool wrong: its interval must hold its own figure and be wide.
    flip = {"ship": "skip", "skip": "ship"}
    noisy = [
        r.model_copy(update={"verdict": flip[r.ref_verdict]})
        if r.persona == "skeptic" and int(r.slug[1:]) % 3 == 0 else r
        for r in perfect
    ]  # fmt: skip
    ci = intervals(noisy, draws=400)
    agreement = persona_figures(noisy)["skeptic"]["verdict_agreement"]
    lo, hi = ci["skeptic_agreement"]
    assert lo < agreement < hi and hi - lo > 0.2
    assert ci["builder_agreement"] == [1.0, 1.0]
    lo, hi = ci["panel_ship_pct_spearman"]
    assert lo < panel_figures(noisy)["panel_ship_pct_spearman"] <= hi
    # The same answers print the same intervals.
    assert intervals(noisy, draws=400) == ci


def test_persona_file_figures_say_whether_they_are_in_sample(monkeypatch, tmp_path):
    """The weights' own figures are in-sample only on the tools their fit saw: a reference file
    at the recorded path that has since grown is held out where it is new."""
    import re

    from shipskip.heldout import fit_note
    from shipskip.personas import load_prompts
    from shipskip.reference import load_reference

    monkeypatch.chdir(ROOT)
    prompts = _with_shipped_calibration(load_prompts(ROOT / "prompts"))
    panel = ROOT / "data" / "reference" / "panel.jsonl"
    slugs = [i.card.slug for i in load_reference(panel)]
    assert fit_note(prompts, panel, slugs) == "in-sample"
    other = tmp_path / "held-out.jsonl"
    other.write_text("")
    note = fit_note(prompts, other, ["a-new-tool"])
    assert re.fullmatch(
        r"fitted on data/reference/panel\.jsonl \(\d+ tools\): held out where no tool is shared", note
    )
    # The same path with one tool more than the fit saw: no longer in-sample.
    assert fit_note(prompts, panel, [*slugs, "a-new-tool"]).startswith("fitted on data/reference/panel.jsonl")
    # Files fitted before digests were recorded: the recorded path is all there is to go on.
    for p in prompts.personas.values():
        p.checklist.calibration = p.checklist.calibration.model_copy(update={"tools": 0, "tools_digest": ""})
    assert fit_note(prompts, panel, ["a-new-tool"]) == "in-sample"


def _with_shipped_calibration(prompts):
    from shipskip import calibrations

    shipped = calibrations.load_file(next(calibrations.shipped_dir().glob("*.json")))
    by_persona = {e.persona: e.calibration for e in shipped.entries}
    return prompts.model_copy(update={"personas": {
        n: p.model_copy(update={"checklist": calibrations.apply(p.checklist, by_persona[n], "shipped")})
        for n, p in prompts.personas.items()
    }})  # fmt: skip


@pytest.mark.slow
def test_write_weights_reports_the_weights_it_wrote(isolated, tmp_path, monkeypatch):
    """With --write-weights, the model's own figures are those of the calibration just written,
    which goes to the calibrations folder, not the prompts: judged again, the same figures come
    back, and no persona file (nor any prompt hash) changed."""
    from shipskip import calibrations
    from shipskip.evaluate import run_checklist_eval
    from shipskip.personas import load_prompts
    from shipskip.review import model_keys

    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join((ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines(True)[:12]))
    answers = str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    settings = get_settings()
    prompts = load_prompts(settings.prompts_dir)
    hashes = {p: prompts.prompt_hash(p) for p in prompts.personas}
    key = model_keys(settings, prompts, ["builder"])["builder"]
    folder = settings.calibrations_dir
    before = calibrations.find_fitted(folder, key, "builder", prompts.personas["builder"].version)
    first = run_checklist_eval(
        get_settings(), ref, answers_from=answers, write_weights=True, command="fit-12"
    )
    after = calibrations.find_fitted(folder, key, "builder", prompts.personas["builder"].version)
    assert (folder / key.file_name).is_file()
    assert before is not None and after is not None  # the shipped one, then the one just written
    assert after.calibration.command == "fit-12" and after.calibration.tools == 12
    assert after.calibration.weights != before.calibration.weights
    assert after.figures["tools"] == 12 and len(after.figures["kappa_interval"]) == 2
    again_prompts = load_prompts(settings.prompts_dir)
    assert {p: again_prompts.prompt_hash(p) for p in again_prompts.personas} == hashes
    assert first.summary["persona_files"]["fit"] == "in-sample"
    again = run_checklist_eval(get_settings(), ref, answers_from=answers)
    assert first.summary["persona_files"]["seats"] == again.summary["persona_files"]["seats"]
    assert (
        first.summary["persona_files"]["panel_ship_pct_spearman"]
        == (again.summary["persona_files"]["panel_ship_pct_spearman"])
    )


@pytest.mark.slow
def test_eval_takes_counts_what_cards_lack_what_was_refused_and_what_was_composed(fake, isolated, tmp_path):
    """`eval --takes`: every published take states only what its card says; a seat whose every
    attempt invents a number is composed from its checklist; refused attempts are counted by kind."""
    from fakeopenai import is_take_request, take_text

    from shipskip.evaluate import run_checklist_eval

    lines = (ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines()[:2]
    ref = tmp_path / "ref.jsonl"
    ref.write_text("\n".join(lines) + "\n")

    def answer(req):
        assert is_take_request(req)
        if persona_of(req) == "skeptic":
            return take_text(req, "has 82 billion parameters, its card says.")
        if len(req["messages"]) == 2:  # a first attempt
            return take_text(req, "is a [card_name] which I have never seen before.")
        return take_text(req)  # names a word of its card

    fake.default = answer
    answers = ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl"
    out = run_checklist_eval(get_settings(), ref, answers_from=str(answers), takes=2)
    t = out.summary["takes"]
    firsts = [r for r in fake.requests if len(r["messages"]) == 2]
    skeptics = sum(persona_of(r) == "skeptic" for r in firsts)
    assert skeptics >= 1 and t["takes_asked"] == len(firsts) == t["takes_written"]
    assert t["takes_stating_what_the_card_lacks"] == 0 and t["grounded_rate"] == 1.0
    assert t["composed_from_checklist"] == skeptics
    assert t["composed_rate"] == round(skeptics / len(firsts), 3)
    assert t["attempts_refused"] == f"number {3 * skeptics}, placeholder {len(firsts) - skeptics}"


# -- counted seats and the flip chance, out-of-fold ---------------------------------------


def _scored_persona(slug, persona, ref, score):
    from shipskip.models import verdict_for
    from shipskip.reference import ItemResult

    return ItemResult(
        slug=slug, persona=persona, ref_verdict=ref, ref_score=None, verdict=verdict_for(score), score=score,
        first_attempt_valid=True, grounded=None, verdict_flips=0.0, score_spread=None, take=None,
    )  # fmt: skip


def _results(n=40):
    """Two seats whose scores follow their labels and one whose scores ignore them."""
    out = []
    for i in range(n):
        ref = "ship" if i % 2 else "skip"
        sure = 75 + i % 7 if ref == "ship" else 40 - i % 7
        out += [
            _scored_persona(f"t{i}", "builder", ref, sure if i % 10 else 100 - sure),  # one in ten wrong
            _scored_persona(f"t{i}", "skeptic", ref, sure - 3 if i % 8 else 100 - sure),
            _scored_persona(f"t{i}", "futurist", ref, 70 if (i // 2) % 2 else 45),
        ]
    return out


def test_expected_calibration_error_weighs_each_bin_by_its_panels():
    from shipskip.metrics import calibration_error

    ece, bins = calibration_error([(0.05, False)] * 10 + [(0.95, True)] * 9 + [(0.95, False)])
    # Bin 0.0-0.1: 0.05 against 0 flipped; bin 0.9-1.0: 0.95 against 0.9.
    assert ece == 0.05 and [b["panels"] for b in bins] == [10, 10]


def test_counted_figures_drop_the_seat_with_no_signal_and_report_ece_and_coverage():
    from shipskip.eval_figures import counted_figures, persona_figures

    results = _results()
    personas = persona_figures(results)
    assert personas["futurist"]["kappa"] < 0.2 < personas["skeptic"]["kappa"]
    c = counted_figures(results, personas, 0.2)
    assert c["counted"] == ["builder", "skeptic"] and c["not_counted"] == ["futurist"]
    # Two counted seats that agree with their labels beat three with a coin among them.
    assert c["counted_seats"]["ship_balanced_accuracy"] > c["all_seats"]["ship_balanced_accuracy"]
    flip = c["flip"]
    assert flip["panels"] == 40 and 0 <= flip["ece"] <= 1 and flip["ece_interval"][0] <= flip["ece"]
    cover = [row["coverage"] for row in c["selective"]]
    assert cover == sorted(cover) and cover[-1] == c["counted_seats"]["coverage"] == 1.0
    # Where the panel is surest it is right more often than over every tool.
    surest = next(row for row in c["selective"] if row["tools"])
    assert surest["accuracy"] >= c["selective"][-1]["accuracy"]


def _first_lines(src, dest, n):
    dest.write_text("".join(src.read_text().splitlines(True)[:n]))
    return dest


def test_held_out_refuses_a_file_that_shares_tools_with_the_fit(isolated, tmp_path, monkeypatch):
    """`eval --held-out` on tools the shipped calibration was fitted on would print in-sample
    figures as held out: refused, naming the shared tools, before anything is asked or stored."""
    from shipskip.errors import NotHeldOut, ShipskipError
    from shipskip.evaluate import run_checklist_eval

    monkeypatch.chdir(ROOT)  # the calibration names its fit's file relative to the checkout
    ref = _first_lines(ROOT / "data" / "reference" / "panel.jsonl", tmp_path / "ref.jsonl", 3)
    answers = str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    with pytest.raises(NotHeldOut) as e:
        run_checklist_eval(get_settings(), ref, answers_from=answers, held_out=True)
    assert e.value.fitted_on == "data/reference/panel.jsonl"
    assert e.value.shared == ["claw-code", "ollama", "smollm3"]
    with pytest.raises(ShipskipError, match="--write-weights"):
        run_checklist_eval(get_settings(), ref, answers_from=answers, held_out=True, write_weights=True)
    assert not (isolated / "shipskip.duckdb").exists() or not Store(isolated / "shipskip.duckdb").query(
        "SELECT * FROM eval_runs"
    )


@pytest.mark.slow
def test_held_out_judges_the_shipped_calibration_and_saves_answers_that_replay(fake, tmp_path, monkeypatch):
    """On cards its fit never saw, `--held-out` asks the model once, judges the calibration as
    it stands (no out-of-fold refit on these labels), and `--save-answers` writes answers that
    `--answers` reads back to the same figures without asking again."""
    import hashlib

    from conftest import calibrate_as
    from fakeopenai import is_question, question_of, tool_of, yes
    from typer.testing import CliRunner

    from shipskip.cli import app
    from shipskip.evaluate import run_checklist_eval
    from shipskip.reference import ANSWER_FIELDS

    monkeypatch.chdir(ROOT)
    # The fake model gets the shipped calibration with its recorded out-of-fold figures, so
    # which seats count is SmolLM2's (the Futurist does not).
    calibrate_as("fake-model", get_settings().calibrations_dir, figures=True)
    ref = _first_lines(ROOT / "data" / "heldout" / "launches.jsonl", tmp_path / "held.jsonl", 4)
    saved = tmp_path / "answers.jsonl"

    def answer(req):
        assert is_question(req)  # no take is written
        h = int(hashlib.sha256(f"{tool_of(req)}|{question_of(req)}".encode()).hexdigest(), 16)
        return yes(0.3 + (h % 40) / 100)

    fake.default = answer
    out = run_checklist_eval(get_settings(), ref, held_out=True, save_answers=saved)
    asked = len(fake.requests)
    s = out.summary
    assert asked > 0 and "out_of_fold" not in s
    judged = s["persona_files"]
    assert (
        judged["fit"] == "held out: fitted on data/reference/panel.jsonl (101 tools), none of these 4 tools"
    )
    assert judged["tools"] == 4 and set(judged["seats"]) == {
        "builder",
        "skeptic",
        "futurist",
        "creator",
        "founder",
    }
    lo, hi = judged["intervals"]["builder_agreement"]
    assert lo <= judged["seats"]["builder"]["verdict_agreement"] <= hi
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(rows) == 4 * 5 and all(set(r) == ANSWER_FIELDS for r in rows)
    assert {c["source"] for r in rows for c in r["criteria"]} == {"logprobs", "card"}

    again = run_checklist_eval(get_settings(), ref, answers_from=str(saved), held_out=True)
    assert len(fake.requests) == asked
    assert again.summary["persona_files"]["seats"] == judged["seats"]
    assert again.summary["persona_files"]["panel_ship_pct_spearman"] == judged["panel_ship_pct_spearman"]
    # The seats that count come from the calibration's own recorded fit (the shipped one does
    # not count the Futurist), not from these labels; the panel is judged with them alone too.
    counted = s["held_out_counted"]
    assert counted["not_counted"] == ["futurist"] and "futurist" not in counted["counted"]
    assert counted["tools"] == 4 and "counted_ship_balanced_accuracy" in counted["intervals"]

    res = CliRunner().invoke(app, ["eval", str(ref), "--answers", str(saved), "--held-out"])
    assert res.exit_code == 0, res.output
    assert "held out, counted personas only" in res.output and "not counted: futurist" in res.output
    assert "held out: fitted on data/reference/panel.jsonl" in res.output and "out-of-fold" not in res.output
    assert len(fake.requests) == asked


@pytest.mark.slow
def test_save_answers_resumes_a_killed_collection_without_asking_a_seat_twice(fake, tmp_path, monkeypatch):
    """A long collection (the embedded model on a held-out set) that is killed keeps every seat
    it finished in the --save-answers file; run again, it asks only the rest, and a line the kill
    cut short is asked again rather than read."""
    import hashlib

    from fakeopenai import is_question, persona_of, question_of, tool_of, yes

    from shipskip.evaluate import run_checklist_eval

    monkeypatch.chdir(ROOT)
    ref = _first_lines(ROOT / "data" / "heldout" / "launches.jsonl", tmp_path / "held.jsonl", 2)
    saved = tmp_path / "answers.jsonl"

    def answer(req):
        h = int(hashlib.sha256(f"{tool_of(req)}|{question_of(req)}".encode()).hexdigest(), 16)
        return yes(0.3 + (h % 40) / 100)

    fake.default = answer
    seen: list[tuple[str, str, str]] = []

    def killed_at_third(step, slug, persona):
        seen.append((step, slug, persona))
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_checklist_eval(get_settings(), ref, held_out=True, save_answers=saved, on_persona=killed_at_third)
    lines = saved.read_text().splitlines()
    assert [(json.loads(s)["slug"], json.loads(s)["persona"]) for s in lines] == [(s, p) for _, s, p in seen]
    saved.write_text("\n".join(lines[:2]) + "\n" + lines[2][:50])  # the third seat's line, cut by the kill

    seen.clear()
    out = run_checklist_eval(
        get_settings(), ref, held_out=True, save_answers=saved, on_persona=lambda *a: seen.append(a)
    )
    assert [step for step, _, _ in seen].count("kept") == 2 and len(seen) == 10
    asked = [(tool_of(r), persona_of(r), question_of(r)) for r in fake.requests if is_question(r)]
    first_two = {(s, p) for _, s, p in seen[:2]}
    names = {
        json.loads(ln)["card"]["slug"]: json.loads(ln)["card"]["name"] for ln in ref.read_text().splitlines()
    }
    twice = [q for q in asked if asked.count(q) > 1]
    assert twice and {(names[s], p) for s, p in first_two}.isdisjoint({(t, p) for t, p, _ in twice})
    rows = [json.loads(ln) for ln in saved.read_text().splitlines()]
    assert len(rows) == 10 and len({(r["slug"], r["persona"]) for r in rows}) == 10
    assert out.summary["persona_files"]["tools"] == 2
