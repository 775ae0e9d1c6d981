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


def not_counted(take):
    why = "not counted: on this model the Futurist's lens has shown no signal (kappa \u22120.03 on 101 tools)"
    return take.model_copy(update={"counted": False, "not_counted_reason": why})


def test_a_seat_with_no_signal_is_shown_but_not_counted():
    takes = [make_take(p, v, 80 if v == "ship" else 40) for p, v in zip(PERSONAS, ["ship", "skip", "skip", "ship", "ship"], strict=True)]  # fmt: skip
    takes[2] = not_counted(takes[2])
    v = aggregate(takes)
    assert (v.label, v.ship, v.skip, v.not_counted, v.ship_pct) == ("Ship", 3, 1, 1, 75)
    assert v.line == "Ship · 3 ship / 1 skip · 1 persona not counted (no signal on this model)"


def test_fewer_than_two_counted_seats_is_no_verdict():
    takes = [make_take(p, v, 80 if v == "ship" else 40) for p, v in zip(PERSONAS, ["ship", "skip", None, None, None], strict=True)]  # fmt: skip
    takes[1] = not_counted(takes[1])
    v = aggregate(takes)
    assert (v.label, v.ship, v.skip, v.ship_pct, v.not_counted) == ("No verdict", 1, 0, None, 1)
    # One seat that spoke among abstentions is a take, not a panel.
    assert panel("skip", None, None, None, None).label == "No verdict"
    assert panel("skip", "skip", None, None, None).label == "Skip"


def chances(*p_ship):
    takes = [
        make_take(persona, "ship" if p >= 0.5 else "skip", 80 if p >= 0.5 else 40).model_copy(update={"p_ship": p})
        for persona, p in zip(PERSONAS, p_ship, strict=False)
    ]  # fmt: skip
    return aggregate(takes, contested_above=0.35)


def test_flip_chance_is_zero_for_a_unanimous_confident_panel_and_high_for_a_split_one():
    sure = chances(1.0, 1.0, 1.0, 1.0, 1.0)
    assert (sure.label, sure.flip_chance, sure.contested) == ("Ship", 0.0, False)
    nearly = chances(0.97, 0.95, 0.98, 0.96, 0.99)
    assert nearly.flip_chance is not None and nearly.flip_chance < 0.001 and not nearly.contested
    split = chances(0.6, 0.55, 0.45, 0.58, 0.4)
    assert split.label == "Ship" and split.flip_chance is not None and split.flip_chance > 0.35
    assert split.contested and "contested (" in split.line and "chance it would flip)" in split.line
    # Exact: two seats sure of ship out of three keep the majority whatever the third does.
    assert chances(1.0, 1.0, 0.5).flip_chance == 0.0
    # Two coin tosses reading Ship: it stays Ship only when both land on ship (one time in four).
    assert chances(0.5, 0.5).flip_chance == 0.75


def test_flip_chance_is_unknown_where_a_counted_seat_has_no_p_ship():
    v = aggregate([make_take(p, "ship", 80) for p in PERSONAS])
    assert v.flip_chance is None and not v.contested
    # A seat that does not count needs none.
    takes = [make_take(p, "ship", 80).model_copy(update={"p_ship": 0.9}) for p in PERSONAS[:3]]
    takes.append(not_counted(make_take("creator", "skip", 30)))
    assert aggregate(takes).flip_chance is not None
