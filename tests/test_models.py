import pytest
from conftest import make_card
from pydantic import ValidationError

from shipskip.models import REPLY_ADAPTER, CommunityVotes, normalise_category, reply_json_schema


def test_reply_score_must_agree_with_verdict():
    REPLY_ADAPTER.validate_python({"verdict": "ship", "score": 60, "take": "x" * 40})
    REPLY_ADAPTER.validate_python({"verdict": "skip", "score": 59, "take": "x" * 40})
    with pytest.raises(ValidationError):
        REPLY_ADAPTER.validate_python({"verdict": "ship", "score": 59, "take": "x" * 40})
    with pytest.raises(ValidationError):
        REPLY_ADAPTER.validate_python({"verdict": "skip", "score": 75, "take": "x" * 40})
    with pytest.raises(ValidationError):
        REPLY_ADAPTER.validate_python({"verdict": "ship", "score": 101, "take": "x" * 40})


def test_schema_bounds_scores_with_enums_and_anchors_the_take():
    schema = reply_json_schema("Claw Code")
    ship, skip, abstain = schema["anyOf"]
    assert ship["properties"]["score"]["enum"] == list(range(60, 101))
    assert skip["properties"]["score"]["enum"] == list(range(0, 60))
    assert ship["properties"]["take"]["pattern"].startswith("^Claw Code ")
    assert abstain["required"] == ["verdict", "reason"]
    # A name with characters a regex grammar may mishandle gets no pattern at all.
    assert "pattern" not in reply_json_schema('Evil"Name')["anyOf"][0]["properties"]["take"]


@pytest.mark.parametrize("slug", ["../etc", "a/b", "UPPER", "-lead", "trail-", "a..b", ""])
def test_slugs_that_could_be_paths_are_refused(slug):
    with pytest.raises(ValidationError):
        make_card(slug=slug)


def test_categories_are_normalised():
    assert normalise_category("AI Models") == normalise_category("Open Source Models") == "Models"
    assert normalise_category("  developer   tools ") == "Developer Tools"
    assert normalise_category("robotics") == "Robotics"


def test_content_hash_tracks_what_the_panel_reads():
    a = make_card()
    assert a.content_hash() == make_card(url="https://example.com").content_hash()
    assert a.content_hash() != make_card(description=a.description + " Now with plugins.").content_hash()


def test_control_characters_are_removed_from_names():
    card = make_card(name="Bad\x00Name\x1b[31m")
    assert "\x00" not in card.name and "\x1b" not in card.name


def test_community_votes_text():
    assert CommunityVotes().text == "No community votes yet"
    assert CommunityVotes(ship=0, skip=1).text == "0% Ship (0 / 1 voter)"
    assert CommunityVotes(ship=2, skip=1).text == "67% Ship (2 / 3 voters)"


def test_untrusted_names_become_literal_patterns_or_none():
    import re

    from shipskip.models import pattern_literal, reply_json_schema

    assert pattern_literal("Gemini 2.5 Flash") == "Gemini 2[.]5 Flash"
    assert re.fullmatch(pattern_literal("C++ (Beta)! v1.0-rc"), "C++ (Beta)! v1.0-rc")
    for hostile in ['a"b', "a\\b", "x]y", "caf\u00e9", "line\nbreak"]:
        assert pattern_literal(hostile) is None
    pattern = reply_json_schema("Vercel AI SDK 5.0")["anyOf"][0]["properties"]["take"]["pattern"]
    assert "\\." not in pattern and re.match(pattern, "Vercel AI SDK 5.0 " + "x" * 50)
    # The free part refuses quotes, backslashes, newlines and other control characters.
    for bad in ['he said "no" about it, with enough words here', "a\nnew line and more words to fill it"]:
        assert not re.match(pattern, "Vercel AI SDK 5.0 " + bad)
