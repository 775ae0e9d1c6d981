"""What a take may state (shipskip.take_checks): pure functions, on the sample and reference cards."""

from pathlib import Path

import pytest
from conftest import ROOT

from shipskip.cards import load_card
from shipskip.take_checks import compose_take, unsupported

SMOLLM3 = load_card(ROOT / "data" / "tools" / "smollm3.yaml")
CLAW = load_card(ROOT / "data" / "tools" / "claw-code.yaml")


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        # What the demo published, every one of which passed the checks before.
        ("I ship SmolLM3 because it is a large open model that has 82 billion parameters.", "number", "82"),
        ("I ship SmolLM3 because it is one of the largest models ever built.", "claim", "largest"),
        ("I ship SmolLM3 because it was built by me and my team for laptops.", "claim", "built by me"),
        (
            "I ship SmolLM3 because it is a [card_name] which I have never seen before.",
            "placeholder",
            "[card_name]",
        ),
        (
            "I skip Claw Code because it is cleared from the license_holder on the terminal.",
            "placeholder",
            "license_holder",
        ),
        ("I skip Claw Code because it contains a {reason} in the terminal.", "placeholder", "{reason}"),
        ("I skip Claw Code because its terminal agent is <name> and fill in later.", "placeholder", "<name>"),
        ("I ship SmolLM3 because it runs on a laptop; insert benchmark here.", "placeholder", "insert"),
        ("I ship SmolLM3 because it runs on a laptop like XYZ does.", "placeholder", "XYZ"),
        # Numbers: numerals, sizes, prices, percentages and number words the card lacks.
        ("I ship SmolLM3 because it costs $20 a month on a laptop.", "number", "20"),
        ("I ship SmolLM3 because it is 40% faster on a laptop.", "number", "40"),
        ("I ship SmolLM3 because thousands of developers run it on a laptop.", "number", "thousands"),
        ("I ship SmolLM3 because it has 7B parameters for a laptop.", "number", "7"),
        ("I ship SmolLM3 because it has twelve layers on a laptop.", "number", "twelve"),
        # Names the card never mentions: mid-sentence, or name-shaped at a sentence's start.
        ("I ship SmolLM3 because it beats Llama on a laptop.", "name", "Llama"),
        ("I ship SmolLM3 because it runs on a laptop. QuillDB does the same.", "name", "QuillDB"),
        ("I skip Claw Code because its terminal agent is no match for AWS Kiro.", "name", "AWS, Kiro"),
        ("I skip Claw Code because its terminal agent is no match for GPT-4o.", "number", "4"),
        (
            "I ship SmolLM3 because it runs on a laptop, as \uff2c\uff4c\uff41\uff4d\uff41 does.",
            "name",
            "Llama",
        ),
        # A take naming nothing from its card.
        ("I ship SmolLM3 because it is exciting and I would recommend it to anyone.", "ungrounded", ""),
    ],
)
def test_a_take_stating_what_its_card_lacks_is_caught(text, kind, found):
    card = CLAW if "Claw Code" in text else SMOLLM3
    bad = unsupported(text, card, score=75)
    assert bad is not None and bad.kind == kind and found in bad.found
    # The reason fed back to the model says what is wrong, and what to do instead.
    assert "use only facts from the card" in bad.message


@pytest.mark.parametrize(
    "text",
    [
        # The card's own facts, however written: "3B", "three billion", "Apache 2.0", its names.
        "I ship SmolLM3 because it has three billion parameters and runs on a consumer GPU.",
        "I ship SmolLM3 because its 3B parameters fit a laptop, published by Hugging Face.",
        "I ship SmolLM3 because it ships under Apache 2.0 and leads on MMLU and GSM8K.",
        # Its own score stated as a score.
        "I ship SmolLM3 because it runs on a laptop. I give it 82/100.",
        "I ship SmolLM3 because it runs on a laptop, a score of 82 out of 100.",
        "I skip Claw Code because its legal standing has not been tested. Builder or not, a hundred "
        "thousand GitHub stars in two weeks is no licence from Anthropic.",
        # Sentence-initial words are capitalised whatever they are; the panel's words and acronyms.
        "I ship SmolLM3 because it runs on a laptop. Fine-tuning it needs no cloud API.",
    ],
)
def test_a_take_stating_only_what_its_card_says_passes(text):
    card = CLAW if "Claw Code" in text else SMOLLM3
    assert unsupported(text, card, score=82) is None


def test_only_the_takes_own_score_is_allowed_as_a_score():
    assert unsupported("I ship SmolLM3 because it runs on a laptop. I give it 82/100.", SMOLLM3, 82) is None
    bad = unsupported("I ship SmolLM3 because it runs on a laptop. I give it 91/100.", SMOLLM3, 82)
    assert bad is not None and bad.kind == "number" and "91" in bad.found


def test_a_name_or_number_the_card_holds_in_brackets_or_labels_passes():
    card = CLAW.model_copy(update={"description": CLAW.description + " It is tagged [beta] by its authors."})
    assert unsupported("I ship Claw Code because its terminal agent is [beta] and open.", card) is None
    # The criteria the take prompt shows are our words, so a take may name them.
    text = "I ship Claw Code because it offers an SDK for the terminal agent, per my Vendor Check."
    assert unsupported(text, CLAW).kind == "name"
    assert unsupported(text, CLAW, labels=["Vendor check passes"]) is None


@pytest.mark.slow
def test_composed_takes_state_only_what_their_card_says_on_every_reference_card():
    """Composed from the checklist, a take is grounded by construction: on all 101 reference
    cards and every seat, with the shipped answers, it names a card fact and nothing else."""
    from shipskip.checklist import score_from
    from shipskip.models import verdict_for
    from shipskip.personas import load_prompts
    from shipskip.reference import load_reference, stored_answers

    items = load_reference(ROOT / "data" / "reference" / "panel.jsonl")
    prompts = load_prompts(ROOT / "prompts")
    answers = Path(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    rows = stored_answers(None, str(answers), items, prompts)
    cards = {i.card.slug: i.card for i in items}
    assert len(rows) == len(items) * len(prompts.personas)
    for r in rows:
        score = score_from(prompts.personas[r.persona].checklist, r.criteria)
        verdict = verdict_for(score)
        card = cards[r.slug]
        text = compose_take(card, verdict, score, r.criteria)
        assert text.startswith(f"I {verdict} {card.name}") and f"{score}/100" in text
        assert unsupported(text, card, score, [c.label for c in r.criteria]) is None, text


def test_a_composed_take_names_what_weighed_most_in_each_group():
    from shipskip.models import Criterion

    crit = [
        Criterion(id="a", label="runs on your own machine", weight=9.0, p_yes=0.9),
        Criterion(id="b", label="free to start", weight=2.0, p_yes=0.9),
        Criterion(id="c", label="scope stated plainly", weight=1.0, p_yes=0.9),
        Criterion(id="d", label="pay or wait before trying", weight=-4.0, p_yes=0.9),
        Criterion(id="e", label="API, SDK or CLI", weight=3.0, p_yes=0.1),
        Criterion(id="f", label="a gadget to buy", weight=0.0, p_yes=0.9),
    ]
    text = compose_take(SMOLLM3, "ship", 71, crit)
    assert text == (
        'I ship SmolLM3, which its card describes as "A 3B open model that does more than its size '
        'suggests". For it: runs on your own machine, free to start. Against it: pay or wait before '
        "trying. It lacks: API, SDK or CLI. My checklist gives it 71/100."
    )
