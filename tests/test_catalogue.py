"""Catalogue facts: what a card's earlier tools say about it, never what later ones do."""

from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import ROOT, make_card, make_take

from shipskip import catalogue
from shipskip.catalogue import FACTS, Earlier, card_words, facts, nearest, reference_facts, similarities
from shipskip.reference import load_reference

DAY = date(2026, 3, 1)


def earlier(card, day, shipped=1.0):
    return Earlier(card.slug, card.name, card_words(card), card.category, day, shipped)


VECTOR = make_card(slug="vecdb", name="VecDB", tagline="A vector database for embeddings",
                   description="VecDB stores embeddings and answers nearest-neighbour vector queries.")  # fmt: skip
PIANO = make_card(slug="piano", name="Pianola", tagline="Sheet music from a hummed tune", category="Audio",
                  description="Pianola writes sheet music for piano from a tune you hum into the microphone.")  # fmt: skip
NEW = make_card(slug="newvec", name="NewVec", tagline="Embeddings search in a vector database",
                description="NewVec is a vector database: it stores embeddings and runs vector queries fast.")  # fmt: skip


def test_the_nearest_earlier_card_is_the_one_that_does_the_same_thing():
    sims = similarities(card_words(NEW), [earlier(VECTOR, DAY), earlier(PIANO, DAY)])
    assert sims[0] > 0.3 > 0.05 > sims[1]
    got = facts(NEW, DAY + timedelta(days=1), [earlier(VECTOR, DAY, 1.0), earlier(PIANO, DAY, 0.0)])
    assert set(got) == set(FACTS)
    assert got["catalogue_nearest"] == sims[0]
    assert got["catalogue_rivals_shipped"] == pytest.approx(1.0, abs=0.05)  # the similar one shipped
    assert got["catalogue_category_busy"] == pytest.approx(
        1 / 6, abs=1e-4
    )  # one Developer Tools launch before
    assert nearest(NEW, DAY + timedelta(days=1), [earlier(VECTOR, DAY), earlier(PIANO, DAY)]) == [
        ("VecDB", sims[0])
    ]


def test_facts_never_see_a_tool_from_the_same_day_or_later():
    before_only = [earlier(PIANO, DAY - timedelta(days=5), 0.0)]
    later = [
        earlier(VECTOR, DAY),
        earlier(VECTOR.model_copy(update={"slug": "v2"}), DAY + timedelta(days=30)),
    ]
    # Equal facts: later tools move neither the nearest card nor the word weights (IDF).
    assert facts(NEW, DAY, before_only + later) == facts(NEW, DAY, before_only)
    assert nearest(NEW, DAY, later) == []
    # A card with no day sees nothing rather than risk seeing the future.
    assert facts(NEW, None, before_only)["catalogue_nearest"] == 0.0
    # Launches older than the window are not "recent" in the category.
    old = [earlier(VECTOR, DAY - timedelta(days=91))]
    assert facts(NEW, DAY, old)["catalogue_category_busy"] == 0.0
    assert facts(NEW, DAY, old)["catalogue_nearest"] > 0.3


def test_on_the_reference_each_card_reads_only_the_cards_above_it():
    cards = [i.card for i in load_reference(ROOT / "data" / "reference" / "panel.jsonl")][:30]
    shipped = {c.slug: 0.5 for c in cards}
    full = reference_facts(cards, shipped)
    assert full[cards[0].slug]["catalogue_nearest"] == 0.0  # the first has no catalogue
    for n in (5, 17, 29):
        # Cutting the file after card n changes nothing for card n: later cards were never read.
        assert reference_facts(cards[: n + 1], shipped)[cards[n].slug] == full[cards[n].slug]
        # Changing how a later card fared changes nothing either.
        other = {**shipped, **{c.slug: 1.0 for c in cards[n + 1 :]}}
        assert reference_facts(cards, other)[cards[n].slug] == full[cards[n].slug]


def test_the_store_catalogue_gives_each_tools_day_and_panel(file_store):
    for slug, launched, verdicts in (
        ("old-one", date(2026, 1, 5), ["ship"] * 5),
        ("new-one", None, ["skip"] * 5),
    ):
        card = make_card(slug=slug, name=slug.title(), launched=launched)
        file_store.commit_review(
            file_store.begin_run(card), card,
            [make_take(p, v, 70 if v == "ship" else 30) for p, v in zip(
                ["builder", "skeptic", "futurist", "creator", "founder"], verdicts, strict=True)],
        )  # fmt: skip
    rows = {e.slug: e for e in catalogue.from_store(file_store.catalogue())}
    assert rows["old-one"].day == date(2026, 1, 5) and rows["old-one"].shipped == 1.0
    assert rows["new-one"].day == datetime.now(UTC).date() and rows["new-one"].shipped == 0.0
    # A card launched today reads the one launched in January, not the one reviewed today.
    got = nearest(make_card(slug="x", name="X"), datetime.now(UTC).date(), list(rows.values()))
    assert [n for n, _ in got] == ["Old-One"]


@pytest.mark.slow
def test_eval_with_the_setting_fits_the_facts_out_of_fold_and_writes_nothing(isolated, tmp_path, monkeypatch):
    from shipskip.errors import BadParameter
    from shipskip.evaluate import run_checklist_eval
    from shipskip.settings import get_settings
    from shipskip.store import Store

    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join((ROOT / "data" / "reference" / "panel.jsonl").read_text().splitlines(True)[:8]))
    answers = str(ROOT / "data" / "reference" / "answers-smollm2-135m.jsonl")
    monkeypatch.setenv("SHIPSKIP_CATALOGUE_FACTS", "1")
    with pytest.raises(BadParameter, match="SHIPSKIP_CATALOGUE_FACTS"):
        run_checklist_eval(get_settings(), ref, answers_from=answers, write_weights=True)
    assert not (isolated / "calibrations").exists()
    out = run_checklist_eval(get_settings(), ref, answers_from=answers)
    rows = Store(isolated / "shipskip.duckdb").eval_items(out.eval_id)
    items = load_reference(ref)
    expected = reference_facts([i.card for i in items], catalogue.reference_shipped(items))
    for r in rows:
        got = {c["id"]: c["p_yes"] for c in r["criteria"] if c["id"].startswith("catalogue_")}
        assert got == expected[r["slug"]]
    assert out.summary["out_of_fold"]["tools"] == 8
