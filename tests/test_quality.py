from conftest import make_card, make_take

from shipskip.metrics import cohen_kappa, spearman
from shipskip.models import Take
from shipskip.quality import (
    consensus,
    flip_rate,
    grounding,
    is_contested,
    is_grounded,
    order_independent,
    panel_similarity,
)

CARD = make_card(
    name="SmolLM3", description="SmolLM3 is a 3B model under Apache 2.0 that runs on one consumer GPU."
)


def test_grounding_needs_a_fact_from_the_description():
    assert is_grounded("SmolLM3 runs on a consumer GPU, which I like.", CARD)
    assert is_grounded("SmolLM3 ships under Apache licence terms.", CARD)
    assert not is_grounded("SmolLM3 is exciting and I would recommend it to anyone.", CARD)
    assert not is_grounded(None, CARD)


def test_a_take_the_grounding_check_cannot_judge_is_neither_grounded_nor_ungrounded():
    # A description with no content word leaves nothing to name: no verdict, so no badge.
    bare = make_card(name="Zed", description="Zed is a tool that is and will be what it is, I think.")
    assert not is_grounded("Zed is exciting, with lovely typography.", bare)
    assert grounding("Zed is exciting, with lovely typography.", bare) is None
    assert grounding(None, CARD) is None
    assert grounding("SmolLM3 runs on a consumer GPU.", CARD) is True
    assert grounding("SmolLM3 is exciting.", CARD) is False


def test_kappa_matches_a_hand_computed_case():
    # 10 items: agree on 7. Rater A: 6 ship 4 skip; B: 5 ship 5 skip. p_e = (6*5 + 4*5) / 100 = 0.5.
    a = ["ship"] * 6 + ["skip"] * 4
    b = ["ship"] * 4 + ["skip"] * 2 + ["skip"] * 3 + ["ship"]
    assert sum(x == y for x, y in zip(a, b, strict=True)) == 7
    assert cohen_kappa(a, b) == 0.4  # (0.7 - 0.5) / (1 - 0.5)
    assert cohen_kappa(["ship"] * 3, ["ship"] * 3) == 1.0
    assert cohen_kappa([], []) is None


def test_spearman_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == -1.0
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == 0.949
    assert spearman([5, 5, 5], [1, 2, 3]) is None


def test_consensus_keeps_the_median_and_records_spread_and_flips():
    draws = [
        make_take("skeptic", "skip", 40),
        make_take("skeptic", "ship", 70),
        make_take("skeptic", "skip", 55),
    ]
    c = consensus(draws)
    assert (c.score, c.verdict, c.samples, c.score_spread) == (55, "skip", 3, 30)
    assert c.verdict_flips == round(1 / 3, 3) and c.attempts == 3
    assert c.usage.prompt_tokens == 30
    assert flip_rate(["ship", "ship", "ship"]) == 0


def test_contested_when_one_unstable_seat_could_change_the_label():
    steady = [
        make_take(p, v, 80 if v == "ship" else 30)
        for p, v in zip(
            ["builder", "skeptic", "futurist", "creator"], ["ship", "ship", "skip", "ship"], strict=True
        )
    ]
    assert not is_contested(steady)
    shaky = [*steady[:2], steady[2].model_copy(update={"verdict_flips": 0.33}), steady[3]]
    assert not is_contested(shaky)  # 3-1 to 4-0 keeps "Ship"
    shaky2 = [steady[0].model_copy(update={"verdict_flips": 0.33}), *steady[1:]]
    assert is_contested(shaky2)  # 3-1 to 2-2 turns "Mixed"


def test_similarity_of_copies_is_high_and_of_distinct_takes_low():
    copies = [
        make_take(p, "ship", 80, "SmolLM3 runs locally on consumer hardware with Apache licensing.")
        for p in ("builder", "skeptic", "futurist")
    ]
    distinct = [
        make_take("builder", "ship", 80, "SmolLM3 installs with pip and runs offline on my laptop."),
        make_take(
            "skeptic", "skip", 40, "SmolLM3 competes with Qwen and Gemma; benchmark claims lack method."
        ),
        make_take("founder", "skip", 30, "SmolLM3 has no buyer; Hugging Face captures hub revenue instead."),
    ]
    assert panel_similarity(copies, CARD) == 1.0
    assert panel_similarity(distinct, CARD) < 0.1
    assert panel_similarity([Take(persona="x")], CARD) is None


def test_order_check():
    assert order_independent({"A": "Ship · 3 ship / 1 skip"}, {"A": "Ship · 3 ship / 1 skip"})
    assert not order_independent({"A": "Ship · 3 ship / 1 skip"}, {"A": "Mixed · 2 ship / 2 skip"})
