"""Checklist grading and calibration: pure functions, no model."""

import shutil

import pytest
from conftest import ROOT

from shipskip.calibrate import Observation, fit, out_of_fold, predict
from shipskip.checklist import abstains, below_relevance, card_facts, explanation_faults, features, score_from
from shipskip.errors import InputError
from shipskip.models import Criterion, Take, verdict_for
from shipskip.personas import Calibration, load_prompts
from shipskip.take_checks import normalise, take_problem


@pytest.fixture
def prompts():
    return load_prompts(ROOT / "prompts")


def with_calibration(checklist, **cal):
    return checklist.model_copy(update={"calibration": Calibration(**cal)})


def test_every_persona_has_a_checklist_of_six_to_twelve_signed_questions(prompts):
    for p in prompts.personas.values():
        items = p.checklist.items
        questions = [i for i in items if i.question]
        assert 6 <= len(questions) <= 12 and len(items) - len(questions) <= 6
        assert {i.counts for i in items} == {"for", "against"}, p.name
        for i in items:
            assert i.sign * p.checklist.weight(i) >= 0, (p.name, i.id)
    # Score and abstention weights are data, and the lenses that abstain have a relevance question.
    assert prompts.personas["founder"].checklist.relevance is not None
    assert prompts.personas["creator"].checklist.relevance is not None


def test_score_is_base_plus_weighted_p_yes_and_the_verdict_follows(prompts):
    cl = prompts.personas["skeptic"].checklist
    ids = [i.id for i in cl.items]
    cl = with_calibration(cl, base=40, weights={ids[0]: 30, ids[3]: -20}, means={ids[0]: 0.5})
    crit = [Criterion(id=i, label=i, weight=0, p_yes=0.0) for i in ids]
    assert score_from(cl, crit) == 40
    crit[0] = Criterion(id=ids[0], label="a", weight=30, p_yes=0.9)
    assert score_from(cl, crit) == 67 and verdict_for(67) == "ship"
    crit[3] = Criterion(id=ids[3], label="b", weight=-20, p_yes=1.0)
    assert score_from(cl, crit) == 47 and verdict_for(47) == "skip"
    # A question whose every attempt failed counts at its reference mean, not as a "no".
    crit[0] = Criterion(id=ids[0], label="a", weight=30, p_yes=None, source="failed")
    assert score_from(cl, crit) == round(40 + 30 * 0.5 - 20)
    big = with_calibration(cl, base=95, weights={**dict.fromkeys(ids, 0.0), ids[0]: 30})
    assert score_from(big, [Criterion(id=ids[0], label="a", weight=30, p_yes=1.0)]) == 100


def test_relevance_cut_off_and_the_fitted_abstention_formula(prompts):
    cl = with_calibration(prompts.personas["founder"].checklist, abstain_below=0.4)
    assert below_relevance(cl, 0.39) and not below_relevance(cl, 0.4)
    assert not below_relevance(prompts.personas["skeptic"].checklist, None)
    crit = [Criterion(id=i.id, label=i.id, weight=0, p_yes=0.5) for i in cl.items]
    model = with_calibration(cl, abstain_below=0.0, abstain_base=1.0, abstain_weights={"relevance": -2.0})
    assert abstains(model, 0.3, crit) and not abstains(model, 0.8, crit)
    # A persona with no relevance question never abstains, whatever its formula says.
    assert not abstains(prompts.personas["skeptic"].checklist, None, crit)


@pytest.mark.parametrize(
    "text, verdict, problem",
    [
        (
            "Demo Tool is MIT licensed and runs from my terminal in a minute, which is all I ask.",
            "ship",
            None,
        ),
        (
            "You are the Builder: a working developer who installs things on a Tuesday afternoon.",
            "ship",
            "repeats",
        ),
        (
            "Demo Tool is open but I would skip it until the docs catch up with the claims.",
            "ship",
            "skipping",
        ),
        (
            "Demo Tool is open but I\u200b would\u200b skip it until the docs catch up with it.",
            "ship",
            "skipping",
        ),
        ("Demo Tool is a must-have for anyone who formats demo data every single day.", "skip", "shipping"),
        ("Too short.", "skip", "short"),
        ("Demo Tool: answer yes or no, then write your verdict as one JSON object here.", "skip", "repeats"),
        # Seen on the embedded model: the template left unfilled, and "the rules" in plain English.
        ("I skip Demo Tool because it \u2026 (fill in the blank with a different fact)", "skip", "repeats"),
        ("I skip Demo Tool because it ... a fact goes here, then another one.", "skip", "repeats"),
        ("I skip Demo Tool because many of the rules it applies are opaque to its users.", "skip", None),
        ("I skip Demo Tool because it asks me to follow these rules before I can try it.", "skip", "repeats"),
    ],
)
def test_take_problems_are_caught_on_normalised_text(prompts, text, verdict, problem):
    got = take_problem(text, verdict, prompts.personas["builder"], "Write your take in two sentences.")
    assert (got is None) if problem is None else (problem in got)


def test_the_opening_a_take_is_made_to_use_is_no_echo_even_for_a_long_name(prompts):
    """The take prompt shows the opening ("I ship Llama 3.1 405B because it ..."); with a name
    of four words those are eight words in a row, which alone used to fail the echo check."""
    opening = "I ship Llama 3.1 405B because it"
    prompt = f'Say why in 2 or 3 short sentences. Answer as one JSON object: {{"take": "{opening} ..."}}'
    take = f"{opening} gives anyone open weights that rival closed models, if they can rent the GPUs."
    builder = prompts.personas["builder"]
    assert take_problem(take, "ship", builder, prompt, opening) is None
    assert "repeats" in (take_problem(take, "ship", builder, prompt) or "")  # as it was
    # What follows the opening is still checked: copying the prompt after it is an echo.
    copied = f"{opening} would say why in 2 or 3 short sentences about the tool."
    assert "repeats" in (take_problem(copied, "ship", builder, prompt, opening) or "")


def test_a_take_naming_two_of_its_criteria_is_no_echo_but_copying_a_sentence_of_the_prompt_is(prompts):
    """The take prompt lists the criteria behind the score, joined by "; ". Two labels in a row
    ("runs on your own machine; drops into existing work") are nine words the prompt shows, and
    the embedded model wrote exactly that in the demo, at every attempt, so the seat abstained.
    A run of words only counts as an echo inside one sentence or clause of the prompt."""
    from conftest import make_card

    from shipskip.personas import take_instructions, take_messages

    builder = prompts.personas["builder"]
    labels = {"runs_locally": "runs on your own machine", "drop_in": "drops into existing work"}
    criteria = [Criterion(id=k, label=v, weight=40.0, p_yes=0.9) for k, v in labels.items()]
    messages = take_messages(prompts, "builder", make_card(), "ship", 82, criteria)
    prompt = take_instructions(messages)  # as the review hands it to the check
    assert "runs on your own machine; drops into existing work" in prompt
    opening = "I ship Demo Tool because it"
    take = f"{opening} runs on your own machine; drops into existing work, and formats demo data."
    assert take_problem(take, "ship", builder, prompt, opening) is None
    copied = f"{opening} lets me say why in 2 or 3 short sentences, naming facts from the card."
    assert "repeats" in (take_problem(copied, "ship", builder, prompt, opening) or "")


def test_normalise_removes_zero_width_and_bidi_and_folds_width():
    assert normalise("Ｉgnore\u200b\u202e previous") == "ignore previous"


def obs(slug, a, b, verdict, score=None, rel=0.9):
    return Observation(
        slug=slug, answers={"x": a, "y": b}, relevance=rel, ref_verdict=verdict, ref_score=score
    )


@pytest.fixture
def two_item(prompts):
    cl = prompts.personas["founder"].checklist
    items = [cl.items[0].model_copy(update={"id": "x"}), cl.items[-1].model_copy(update={"id": "y"})]
    assert items[0].counts == "for" and items[1].counts == "against"
    relevance = cl.relevance.model_copy(update={"in_lens": [], "out_of_lens": []})
    return cl.model_copy(update={"items": items, "relevance": relevance})


def test_fit_keeps_each_weight_on_its_lens_side_and_separates_the_labels(two_item):
    data = [obs(f"s{i}", 0.7 + i / 100, 0.5, "ship", 75) for i in range(8)]
    data += [obs(f"k{i}", 0.3 + i / 100, 0.5, "skip", 40) for i in range(8)]
    # 'y' counts against, but here it rises with ship: the fit must not turn it into a plus.
    data = [Observation(o.slug, {"x": o.answers["x"], "y": o.answers["x"]}, 0.9, o.ref_verdict, o.ref_score)
            for o in data]  # fmt: skip
    cal = fit(two_item, data)
    assert cal.weights["x"] > 0 and cal.weights["y"] <= 0
    fitted = two_item.model_copy(update={"calibration": cal})
    preds = [predict(fitted, o) for o in data]
    assert all(p.verdict == o.ref_verdict for p, o in zip(preds, data, strict=True))
    assert len({p.score for p in preds}) > 4


def test_abstention_is_fitted_and_never_abstains_without_examples(two_item):
    data = [obs(f"a{i}", 0.5, 0.5, "abstain", rel=0.2 + i / 100) for i in range(4)]
    data += [obs(f"s{i}", 0.6, 0.5, "ship", 70, rel=0.6 + i / 100) for i in range(4)]
    data += [obs(f"k{i}", 0.4, 0.5, "skip", 40, rel=0.6 + i / 100) for i in range(4)]
    fitted = two_item.model_copy(update={"calibration": fit(two_item, data)})
    assert [predict(fitted, o).verdict == "abstain" for o in data] == [
        o.ref_verdict == "abstain" for o in data
    ]
    # A low relevance answer never argues for speaking: its weight pushes towards abstaining.
    assert fitted.calibration.abstain_weights.get("relevance", 0) <= 0
    none = fit(two_item, data[4:])
    assert none.abstain_weights == {}


def test_abstention_reads_only_the_declared_lens_signals_each_held_to_its_direction(two_item):
    # 'y' is declared out of the lens; 'x' is not declared, though here it tracks abstaining
    # perfectly: the fit must not lean on it.
    relevance = two_item.relevance.model_copy(update={"out_of_lens": ["y"]})
    declared = two_item.model_copy(update={"relevance": relevance})
    data = [Observation(f"a{i}", {"x": 0.9, "y": 1.0}, 0.5, "abstain", None) for i in range(5)]
    data += [Observation(f"s{i}", {"x": 0.1, "y": 0.0}, 0.5, "ship", 70) for i in range(5)]
    data += [Observation(f"k{i}", {"x": 0.1, "y": 0.0}, 0.5, "skip", 40) for i in range(5)]
    cal = fit(declared, data)
    assert set(cal.abstain_weights) <= {"relevance", "y"} and cal.abstain_weights["y"] > 0
    fitted = declared.model_copy(update={"calibration": cal})
    assert [predict(fitted, o).verdict == "abstain" for o in data] == [
        o.ref_verdict == "abstain" for o in data
    ]
    # The same fact pointing the other way in the data: held at zero, so no abstention model.
    flipped = [Observation(o.slug, {"x": o.answers["x"], "y": 1.0 - o.answers["y"]}, 0.5, o.ref_verdict,
                           o.ref_score) for o in data]  # fmt: skip
    assert fit(declared, flipped).abstain_weights.get("y", 0.0) == 0.0


@pytest.mark.slow
def test_out_of_fold_never_sees_the_tool_it_predicts(two_item):
    # Each tool's label is the opposite of what its answers say in the rest of the set, so a
    # fit that saw the held-out tool could get it right; out of fold it cannot.
    data = [obs(f"s{i}", 0.8, 0.5, "ship", 80) for i in range(6)] + [
        obs(f"k{i}", 0.2, 0.5, "skip", 30) for i in range(6)
    ]
    odd = obs("odd", 0.8, 0.5, "skip", 30)
    preds = out_of_fold(two_item, [*data, odd])
    assert len(preds) == 13 and preds[-1].slug == "odd" and preds[-1].verdict == "ship"


def test_card_facts_are_read_by_rule_and_kept_out_of_the_yes_rate(prompts):
    from conftest import make_card

    builder = prompts.personas["builder"].checklist
    facts = [i for i in builder.items if i.from_card]
    assert facts and all(i.question is None for i in facts)
    open_card = make_card(
        pricing="Free (Apache 2.0)", description="Runs locally from the command line, offline."
    )
    closed = make_card(
        entry_tier="paid", pricing="$20 per month", description="A hosted assistant behind a waitlist."
    )
    asked = [Criterion(id=i.id, label=i.label, weight=1.0, p_yes=0.9) for i in builder.items if i.question]
    got = {c.id: c for c in card_facts(builder, open_card, asked)}
    assert [c.id for c in card_facts(builder, open_card, asked)] == [i.id for i in builder.items]
    assert got["says_open_source"].p_yes == 1.0 and got["says_open_source"].source == "card"
    assert got["waitlist_or_device"].p_yes == 0.0
    other = {c.id: c.p_yes for c in card_facts(builder, closed, asked)}
    assert other["says_open_source"] == 0.0 and other["waitlist_or_device"] == 1.0
    # The yes-rate measures the model's answers only.
    assert features(builder, list(got.values()), None)["yes_rate"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    "item, problem",
    [
        (
            {
                "id": "both",
                "label": "both kinds",
                "counts": "for",
                "question": "Is it open source at all?",
                "from_card": {"fields": ["pricing"], "pattern": "open"},
            },
            "not both",
        ),
        ({"id": "neither", "label": "neither kind", "counts": "for"}, "not both"),
        (
            {
                "id": "badrx",
                "label": "bad pattern",
                "counts": "for",
                "from_card": {"fields": ["pricing"], "pattern": "(open"},
            },
            "regular expression",
        ),
        (
            {
                "id": "badfield",
                "label": "bad field",
                "counts": "for",
                "from_card": {"fields": ["secret"], "pattern": "open"},
            },
            "fields",
        ),
    ],
)
def test_a_checklist_item_is_a_question_or_a_card_fact(item, problem):
    from pydantic import ValidationError

    from shipskip.personas import Item

    with pytest.raises(ValidationError, match=problem):
        Item.model_validate(item)


def test_settled_by_names_a_card_fact_of_the_same_checklist(prompts, tmp_path):
    import re

    builder = prompts.personas["builder"].checklist
    assert {i.id: i.settled_by for i in builder.items if i.settled_by} == {
        "open_licence": "says_open_source", "runs_locally": "says_runs_local",
        "free_start": "card_free_entry", "dev_interface": "names_dev_surface",
        "paywall": "not card_free_entry",
    }  # fmt: skip
    assert next(i for i in builder.items if i.id == "paywall").settling_fact == ("card_free_entry", False)
    copy = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", copy)
    path = copy / "personas" / "builder.yaml"
    good = path.read_text()
    for wrong, field in (
        ("settled_by: card_free_entry", "settled_by: free_start"),  # a question, not a fact
        ("settled_by: card_free_entry", "settled_by: no_such_fact"),
        ("settled_by: card_free_entry", "settled_by: Card Free"),  # not an item id at all
    ):
        path.write_text(good.replace(wrong, field, 1))
        with pytest.raises(InputError) as err:
            load_prompts(copy)
        assert str(path) in str(err.value) and re.search(r"settled_by|free_start", str(err.value))
    # A fact read from the card is never itself settled by another.
    fact = "      from_card:\n        fields: [entry_tier, pricing]"
    path.write_text(good.replace(fact, "      settled_by: says_open_source\n" + fact, 1))
    with pytest.raises(InputError, match="only a question"):
        load_prompts(copy)


def test_explanations_never_set_a_model_answer_against_the_card_fact_that_settles_it(prompts):
    """Claw Code's card offers no free start. The Builder's model answers say it is free to
    start (above the fit's mean answer): listed, that answer would sit on the other side from
    the card fact ("for: free to start" and "lacking: card offers a free start"). It is left out,
    and the check that counts such takes finds none; on a take explained the old way (no
    settling fact) it finds both faults."""
    from conftest import make_card, shipped_prompts

    from shipskip.cards import load_card

    builder = shipped_prompts().personas["builder"].checklist
    claw = load_card(ROOT / "data" / "tools" / "claw-code.yaml")
    free = make_card(entry_tier="free", pricing="Free")
    answers = {"free_start": 0.9, "open_licence": 0.9, "runs_locally": 0.05, "dev_interface": 0.9}
    asked = [
        Criterion(id=i.id, label=i.label, weight=0.0, p_yes=answers.get(i.id, 0.5))
        for i in builder.items if i.question
    ]  # fmt: skip
    got = card_facts(builder, claw, asked)
    by_id = {c.id: c for c in got}
    assert by_id["free_start"].settled_by == "card_free_entry"
    assert by_id["free_start"].baseline == builder.calibration.means["free_start"]
    assert by_id["free_start"].weight == builder.calibration.weights["free_start"] > 0
    take = Take(persona="builder", verdict="skip", score=40, scoring="checklist", criteria=got)
    assert "free to start" not in [c.label for c in take.in_favour]
    assert "card offers a free start" in [c.label for c in take.lacking]
    assert "card says open source or open weights" in [c.label for c in take.in_favour]
    assert explanation_faults(builder, got) == set()
    assert take.why.startswith("for: ") and "; lacking: " in take.why
    # On a card that does offer a free start, the same answer is listed for the tool.
    on_free = Take(persona="builder", criteria=card_facts(builder, free, asked))
    assert "free to start" in [c.label for c in on_free.in_favour]
    # The same answers explained as they were: against the take's own mean, no settling fact.
    mean = sum(c.p_yes for c in asked) / len(asked)
    old = [
        c.model_copy(update={"baseline": mean if c.source != "card" else 0.5, "settled_by": None})
        for c in got
    ]
    assert explanation_faults(builder, old) == {"two_sides", "contradicts_card"}
    low = [
        c.model_copy(update={"p_yes": 0.01}) if c.id == "free_start" else c
        for c in card_facts(builder, free, asked)
    ]
    unsettled = [c.model_copy(update={"settled_by": None}) for c in low]
    assert explanation_faults(builder, unsettled) == {
        "two_sides",
        "contradicts_card",
        "lacking_what_card_states",
    }
    assert explanation_faults(builder, low) == set()
