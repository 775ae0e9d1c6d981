"""Editors teach the panel: `shipskip label`, the label queue, `judge_alignment` and
`calibrate --with-labels`, on a real DuckDB file and the fake provider."""

import html
import re
from datetime import datetime

import pytest
from conftest import ROOT, make_card, make_take, review
from typer.testing import CliRunner

from shipskip import calibrations
from shipskip.calibration_run import run_calibration
from shipskip.calibrations import ModelKey
from shipskip.cli import app
from shipskip.errors import BadParameter, UnknownPersona, UnknownTool
from shipskip.labels import queue, record_label
from shipskip.metrics import cohen_kappa
from shipskip.models import EditorLabel
from shipskip.publish import write_compare, write_tool
from shipskip.reference import load_reference
from shipskip.settings import get_settings

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]
PANEL = ROOT / "data" / "reference" / "panel.jsonl"
runner = CliRunner()


def seed(store, slug, verdicts, scores, model="m"):
    card = make_card(slug=slug, name=slug.title())
    run = store.begin_run(card)
    takes = [
        make_take(p, v, s, f"{slug} take by {p} with enough words to read.").model_copy(
            update={"model": model}
        )
        for p, v, s in zip(PERSONAS, verdicts, scores, strict=True)
    ]
    store.commit_review(run, card, takes)


def label(store, tool, persona, verdict, reason="seen it fail", **kw):
    return record_label(tool, persona, verdict, reason, store, get_settings(), **kw)


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.mark.slow
def test_a_label_is_stored_with_who_and_when_and_shown_beside_the_take(file_store, isolated):
    seed(file_store, "alpha", ["ship"] * 5, [80] * 5)
    seed(file_store, "beta", ["skip"] * 5, [40] * 5)
    got = label(file_store, "alpha", "skeptic", "skip", "<b>vendor numbers</b> only", score=35, editor="ana")
    assert got == EditorLabel(
        slug="alpha",
        persona="skeptic",
        editor="ana",
        verdict="skip",
        score=35,
        reason="<b>vendor numbers</b> only",
    )
    row = file_store.query(
        "SELECT l.*, t.persona AS take_persona FROM labels l JOIN takes t USING (take_id)"
    )[0]
    assert (
        row["editor"] == "ana"
        and row["take_persona"] == "skeptic"
        and isinstance(row["created_at"], datetime)
    )

    path, _ = write_tool(file_store, isolated / "out", "alpha")
    page = path.read_text()
    assert "&lt;b&gt;vendor numbers&lt;/b&gt;" in page and "<b>vendor" not in page  # autoescaped
    assert "Editor: skip, 35/100 (<b>vendor numbers</b> only) · ana" in text_of(page)
    # Beside the Skeptic's take, not another seat's: it sits in the Skeptic's cell.
    cell = re.search(r'<tr><th scope="row">(?:<a [^>]*>)?Skeptic(?:</a>)?</th>(.*?)</tr>', page, re.S).group(
        1
    )
    assert "Editor: skip" in cell
    assert "Editor: skip, 35/100" in path.with_suffix(".md").read_text()
    compare, _ = write_compare(file_store, isolated / "out", "alpha", "beta")
    assert text_of(compare.read_text()).count("Editor: skip, 35/100") == 1


@pytest.mark.slow
def test_a_new_label_supersedes_the_editors_last_one_and_history_is_kept(file_store):
    seed(file_store, "alpha", ["ship"] * 5, [80] * 5)
    label(file_store, "alpha", "skeptic", "skip", "first look", editor="ana")
    label(file_store, "alpha", "skeptic", "ship", "read the docs", editor="ana")
    label(file_store, "alpha", "skeptic", "abstain", "not my field", editor="bo")
    current = file_store.labels("alpha")
    assert sorted((lb.editor, lb.verdict) for lb in current) == [("ana", "ship"), ("bo", "abstain")]
    history = file_store.labels("alpha", "skeptic", history=True)
    assert [(lb.editor, lb.verdict, lb.reason) for lb in history] == [
        ("ana", "skip", "first look"), ("ana", "ship", "read the docs"), ("bo", "abstain", "not my field"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "error", "says"),
    [
        (("nope", "skeptic", "skip"), UnknownTool, "no reviewed tool with slug 'nope'"),
        (("alpha", "critic", "skip"), UnknownPersona, "unknown persona 'critic'"),
        (("alpha", "skeptic", "maybe"), BadParameter, "verdict: 'maybe' is not one of ship, skip, abstain"),
        (("alpha", "skeptic", "skip", {"score": 101}), BadParameter, "--score: 101 is outside 0-100"),
        (("alpha", "skeptic", "skip", {"score": 75}), BadParameter, "--score: 75 does not fit 'skip'"),
        (("alpha", "skeptic", "abstain", {"score": 50}), BadParameter, "--score: an abstention has no score"),
        (("alpha", "skeptic", "skip", {"reason": "\x1b[2J "}), BadParameter, "--reason: must say why"),
        (("alpha", "skeptic", "skip", {"editor": "a b"}), BadParameter, "--editor: 'a b' must be"),
    ],
)
def test_a_bad_label_is_one_clear_error_and_stores_nothing(file_store, args, error, says):
    seed(file_store, "alpha", ["ship"] * 5, [80] * 5)
    *head, options = args if isinstance(args[-1], dict) else (*args, {})
    options = {"reason": "a reason", "editor": "ana", **options}
    reason = options.pop("reason")
    with pytest.raises(error) as caught:
        label(file_store, *head, reason, **options)
    assert str(caught.value).startswith(says)
    assert file_store.query("SELECT count(*) AS n FROM labels")[0]["n"] == 0


@pytest.mark.slow
def test_label_and_queue_commands(file_store, isolated):
    seed(file_store, "alpha", ["ship"] * 5, [80] * 5)
    ok = runner.invoke(
        app, ["label", "alpha", "skeptic", "skip", "--score", "30", "--reason", "no users", "--editor", "ana"]
    )
    assert ok.exit_code == 0, ok.output
    assert "alpha skeptic: ana: Editor: skip, 30/100 (no users)" in ok.output
    for bad, says in (
        (
            ["label", "alpha", "skeptic", "skip", "--score", "90", "--reason", "no users"],
            "--score: 90 does not fit",
        ),
        (["label", "ghost", "skeptic", "skip", "--reason", "no users"], "no reviewed tool with slug 'ghost'"),
        (["label", "alpha", "oracle", "skip", "--reason", "no users"], "unknown persona 'oracle'"),
    ):
        res = runner.invoke(app, bad)
        assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, (
            res.output
        )
    assert file_store.query("SELECT count(*) AS n FROM labels")[0]["n"] == 1
    shown = runner.invoke(app, ["show", "alpha"])
    assert shown.exit_code == 0 and "Skeptic: Editor: skip, 30/100 (no users) · ana" in shown.output
    res = runner.invoke(app, ["queue", "--limit", "5"])
    assert res.exit_code == 0 and "alpha" in res.output and "1 of 5" in res.output, res.output


@pytest.mark.slow
def test_queue_lists_the_least_certain_verdicts_first(file_store):
    seed(file_store, "sure-ship", ["ship"] * 5, [90, 88, 85, 92, 90])  # 5-0, far from the line
    seed(file_store, "split-far", ["ship", "ship", "ship", "skip", "skip"], [95, 95, 95, 10, 10])  # 3-2
    seed(file_store, "split-near", ["ship", "ship", "ship", "skip", "skip"], [62, 61, 63, 58, 57])  # 3-2
    seed(file_store, "mixed", ["ship", "ship", "skip", "skip", None], [70, 70, 50, 50, None])  # 2-2
    seed(file_store, "near-line", ["ship"] * 5, [61, 62, 60, 61, 63])  # 5-0, every score at the line
    assert [r["slug"] for r in queue(file_store, 10)] == [
        "mixed", "split-near", "split-far", "near-line", "sure-ship",
    ]  # fmt: skip
    assert [r["slug"] for r in queue(file_store, 2)] == ["mixed", "split-near"]
    # A tool whose every seat an editor has labelled is done; one label is not enough.
    for p in PERSONAS:
        label(file_store, "mixed", p, "skip", editor="ana")
    label(file_store, "split-near", "builder", "ship", editor="ana")
    rows = queue(file_store, 10)
    assert [r["slug"] for r in rows][:2] == ["split-near", "split-far"]
    assert rows[0]["labelled"] == 1 and rows[0]["seats"] == 5
    with pytest.raises(BadParameter):
        queue(file_store, 0)


@pytest.mark.slow
def test_judge_alignment_gives_agreement_and_kappa_per_persona_model_and_month(store):
    # Two models' takes; editors' calls chosen so agreement and kappa differ by model.
    panel = {
        "a1": (["ship", "skip", "ship", None, "ship"], [70, 40, 70, None, 80], "m1"),
        "a2": (["ship", "ship", "skip", "ship", None], [70, 70, 40, 70, None], "m1"),
        "a3": (["skip", "skip", "ship", "ship", "skip"], [30, 40, 70, 70, 20], "m1"),
        "b1": (["ship", "ship", "ship", "ship", "ship"], [70, 70, 70, 70, 70], "m2"),
        "b2": (["skip", "ship", "skip", "ship", "skip"], [40, 70, 40, 70, 40], "m2"),
    }
    for slug, (verdicts, scores, model) in panel.items():
        seed(store, slug, verdicts, scores, model=model)
    calls = {  # (slug, persona) -> editors' calls
        ("a1", "skeptic"): ["skip"], ("a2", "skeptic"): ["skip"], ("a3", "skeptic"): ["skip"],
        ("b1", "skeptic"): ["skip"], ("b2", "skeptic"): ["ship"],
        ("a1", "founder"): ["ship"], ("a2", "founder"): ["abstain"], ("a3", "founder"): ["ship"],
        ("b1", "builder"): ["ship", "skip"],  # two editors on one seat: two pairs
    }  # fmt: skip
    editors = ["ana", "bo"]
    for (slug, persona), verdicts in calls.items():
        for editor, v in zip(editors, verdicts, strict=False):
            label(store, slug, persona, "ship", editor=editor)  # superseded below: not counted
            label(store, slug, persona, v, editor=editor)
    rows = {(r["persona"], r["model"]): r for r in store.query("SELECT * FROM judge_alignment")}
    month = datetime.now().date().replace(day=1)
    assert {r["month"] for r in rows.values()} == {month}
    # Independently: the pairs (editor, panel) and metrics.cohen_kappa on them.
    expected = {}
    for (slug, persona), verdicts in calls.items():
        takes, _, model = panel[slug]
        said = takes[PERSONAS.index(persona)] or "abstain"
        for v in verdicts:
            expected.setdefault((persona, model), []).append((v, said))
    assert set(rows) == set(expected)
    for key, pairs in expected.items():
        ed, pn = [a for a, _ in pairs], [b for _, b in pairs]
        row = rows[key]
        assert row["labels"] == len(pairs)
        assert row["agreed"] == sum(a == b for a, b in pairs)
        assert row["agreement"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs), abs=1e-3)
        assert row["kappa"] == (
            None if cohen_kappa(ed, pn) is None else pytest.approx(cohen_kappa(ed, pn), abs=1e-3)
        )
    # Spelled out: one side always gave the same call, so what agreement there is is chance.
    assert (rows[("skeptic", "m1")]["agreement"], rows[("skeptic", "m1")]["kappa"]) == (0.667, 0.0)
    assert (rows[("skeptic", "m2")]["agreement"], rows[("skeptic", "m2")]["kappa"]) == (0.5, 0.0)
    assert rows[("founder", "m1")]["labels"] == 3 and rows[("builder", "m2")]["labels"] == 2


@pytest.mark.slow
def test_calibrate_with_labels_fits_the_editors_calls_on_the_stored_answers(
    fake, isolated, tmp_path, monkeypatch
):
    from test_calibrations import decisive, first_tools

    monkeypatch.setenv("SHIPSKIP_MODEL", "decisive-model")
    ref = first_tools(tmp_path, 4)
    fake.default = decisive(load_reference(PANEL))
    settings = get_settings()
    review(ROOT / "data" / "tools" / "pagerduck.yaml")  # not among the 4 reference tools
    store = __import__("shipskip.store", fromlist=["Store"]).Store.from_settings(settings)
    label(store, "pagerduck", "skeptic", "skip", "rests on its own numbers", editor="ana")
    label(store, "pagerduck", "builder", "ship", "drops into a pager rota", editor="ana")
    # A label on another model's take is not this model's training data.
    seed(store, "elsewhere", ["ship"] * 5, [80] * 5, model="other-model")
    label(store, "elsewhere", "skeptic", "skip", editor="ana")

    out = run_calibration(settings, ref, with_labels=True)
    assert out.editor_labels == 2
    key = ModelKey("decisive-model")
    skeptic = calibrations.find_fitted(settings.calibrations_dir, key, "skeptic", "6")
    futurist = calibrations.find_fitted(settings.calibrations_dir, key, "futurist", "4")
    assert skeptic.calibration.tools == 5 and skeptic.figures["tools"] == 5
    assert futurist.calibration.tools == 4
    # Without labels the same answers fit the four reference tools only.
    again = run_calibration(settings, ref)
    assert again.editor_labels == 0
    skeptic = calibrations.find_fitted(settings.calibrations_dir, key, "skeptic", "6")
    assert skeptic.calibration.tools == 4
    res = runner.invoke(app, ["calibrate", str(ref), "--with-labels", "--yes"])
    assert res.exit_code == 0 and "editors' labels fitted with the reference: 2" in res.output, res.output


@pytest.mark.slow
def test_the_label_flow_has_typed_parameters_and_stores_the_label(file_store, prefect_harness):
    """The `label-seat` deployment's flow on a real Prefect API: typed parameters refuse a seat or
    a call that is not one at submission; an unknown tool fails the run with the typed error."""
    from prefect.exceptions import ParameterTypeError

    from flows.labels import label_persona

    seed(file_store, "alpha", ["ship"] * 5, [80] * 5)
    got = label_persona(
        tool="alpha", persona="founder", verdict="abstain", reason="no business here", editor="ana"
    )
    assert got["verdict"] == "abstain" and got["editor"] == "ana"
    assert [(lb.persona, lb.verdict) for lb in file_store.labels("alpha")] == [("founder", "abstain")]
    with pytest.raises(ParameterTypeError, match="persona"):
        label_persona(tool="alpha", persona="critic", verdict="skip", reason="why not")
    with pytest.raises(ParameterTypeError, match="verdict"):
        label_persona(tool="alpha", persona="skeptic", verdict="maybe", reason="why not")
    with pytest.raises(UnknownTool):
        label_persona(tool="nope", persona="skeptic", verdict="skip", reason="why not")
    assert len(file_store.labels("alpha", history=True)) == 1


def test_labels_on_an_uncalibrated_models_takes_give_back_its_own_answers(file_store):
    from shipskip.calibrations import corrected
    from shipskip.labels import labelled_observations, raw_answer
    from shipskip.models import Criterion

    for p, b in ((0.3, 0.9), (0.98, 0.5), (0.02, 0.7), (0.55, 0.02)):
        assert raw_answer(corrected(p, b), b) == pytest.approx(p, abs=2e-3)
    # A skeptic take by a model that was uncalibrated then: its stored answers are corrected.
    card = make_card(slug="alpha", name="Alpha")
    raw, bias = {"edge": 0.8, "widely_used": 0.4}, {"edge": 0.9, "widely_used": 0.5}
    criteria = [Criterion(id=k, label=k, weight=5.0, p_yes=corrected(v, bias[k])) for k, v in raw.items()]
    take = make_take("skeptic", "skip", 40).model_copy(
        update={"model": "new-model", "scoring": "checklist", "uncalibrated": True, "prompt_version": "6",
                "prompt_hash": "ph", "criteria": criteria}
    )  # fmt: skip
    file_store.commit_review(file_store.begin_run(card), card, [take])
    label(file_store, "alpha", "skeptic", "ship", editor="ana")
    versions = {"skeptic": "6"}
    # Without the bias the answers cannot be given back: the label is left out.
    assert labelled_observations(file_store, "new-model", versions, {}) == []
    [row] = labelled_observations(file_store, "new-model", versions, {("skeptic", "ph"): bias})
    assert row["ref_verdict"] == "ship"
    assert {c.id: c.p_yes for c in row["criteria"]} == pytest.approx(raw, abs=2e-3)
    # Another model, or another prompt version, is not this calibration's data.
    assert labelled_observations(file_store, "other-model", versions, {("skeptic", "ph"): bias}) == []
    assert labelled_observations(file_store, "new-model", {"skeptic": "5"}, {("skeptic", "ph"): bias}) == []
