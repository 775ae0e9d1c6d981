from conftest import make_take

from shipskip.panel import aggregate

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


def panel(*verdicts: str | None):
    takes = []
    for persona, v in zip(PERSONAS, verdicts, strict=False):
        takes.append(make_take(persona, v, None if v is None else (80 if v == "ship" else 40)))
    return aggregate(takes)


def test_labels_follow_the_majority_of_seats_that_spoke():
    assert panel("ship", "ship", "ship", "ship").line == "Ship · 4 ship / 0 skip"
    assert panel("ship", "skip", "ship", "ship").line == "Ship · 3 ship / 1 skip"
    assert panel("ship", "skip", "ship", "ship").ship_pct == 75
    two_two = panel("ship", "skip", "skip", "ship")
    assert (two_two.label, two_two.ship_pct) == ("Mixed", 50)
    one_three = panel("skip", "skip", "ship", "skip")
    assert (one_three.label, one_three.ship_pct) == ("Skip", 25)


def test_abstentions_are_outside_both_counts():
    v = panel("ship", "skip", "ship", None)
    assert (v.ship, v.skip, v.abstain, v.ship_pct) == (2, 1, 1, 67)
    assert v.line == "Ship · 2 ship / 1 skip"


def test_all_abstain_has_no_verdict():
    v = panel(None, None, None, None, None)
    assert v.label == "No verdict" and v.ship_pct is None and v.pct_text == "n/a"


def test_ship_pct_rounds_half_up():
    # 1 of 8 is 12.5%: half-up gives 13, banker's rounding would give 12.
    takes = [make_take("builder", "ship", 80)] + [make_take(f"p{i}", "skip", 10) for i in range(7)]
    assert aggregate(takes).ship_pct == 13


def test_flagged_takes_are_shown_but_not_counted():
    takes = [
        make_take(p, v, 80 if v == "ship" else 40)
        for p, v in zip(PERSONAS, ["ship", "ship", "skip", "skip", "skip"], strict=True)
    ]
    takes[2] = takes[2].model_copy(update={"suspicious": True})
    takes[3] = takes[3].model_copy(update={"suspicious": True})
    v = aggregate(takes)
    assert (v.label, v.ship, v.skip, v.flagged, v.ship_pct) == ("Ship", 2, 1, 2, 67)
    assert v.line == "Ship · 2 ship / 1 skip · 2 flagged takes not counted"
