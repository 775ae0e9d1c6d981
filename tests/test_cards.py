import json

import pytest
import yaml
from conftest import ROOT

from shipskip.cards import load_card
from shipskip.errors import InputError
from shipskip.models import ToolCard

GOOD = """name: Demo Tool
slug: demo-tool
tagline: Does a demo thing
category: AI Models
pricing: Free
entry_tier: Free
description: Demo Tool is a command-line helper that formats demo data for developers.
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_sample_cards_all_load():
    cards = [load_card(p) for p in sorted((ROOT / "data" / "tools").iterdir())]
    assert len(cards) >= 6
    assert {"claw-code", "smollm3"} <= {c.slug for c in cards}
    assert len({c.slug for c in cards}) == len(cards)


def test_yaml_json_and_markdown_cards(tmp_path):
    y = load_card(write(tmp_path, "a.yaml", GOOD))
    assert y.category == "Models" and y.entry_tier == "free"
    j = load_card(
        write(
            tmp_path,
            "a.json",
            '{"name": "J", "slug": "j", "tagline": "t", "category": "c",'
            ' "pricing": "p", "entry_tier": "paid", "description": "' + "d" * 30 + '"}',
        )
    )
    assert j.slug == "j"
    md = (
        "---\n"
        + GOOD.replace(
            "description: Demo Tool is a command-line helper that formats demo data for developers.\n", ""
        )
        + "---\nThe body becomes the description of this tool.\n"
    )
    assert load_card(write(tmp_path, "a.md", md)).description.startswith("The body becomes")


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        ("missing.yaml", GOOD.replace("pricing: Free\n", ""), "pricing"),
        ("empty-name.yaml", GOOD.replace("name: Demo Tool", "name: ''"), "name"),
        ("bad-tier.yaml", GOOD.replace("entry_tier: Free", "entry_tier: sometimes"), "entry_tier"),
        ("traversal.yaml", GOOD.replace("slug: demo-tool", "slug: ../../etc/passwd"), "slug"),
        ("extra.yaml", GOOD + "price_usd: 3\n", "price_usd"),
        ("binary.yaml", b"\x00\x01\x02name", "file"),
        ("latin1.yaml", GOOD.replace("Demo Tool is", "Caf\xe9 is").encode("latin-1"), "file"),
        ("bomb.yaml", 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "file"),
        ("tag.yaml", GOOD + "x: !!python/object/apply:os.system ['true']\n", "file"),
        ("list.yaml", "- a\n- b\n", "(root)"),
        ("js-url.yaml", GOOD + "url: javascript:alert(1)\n", "url"),
        ("file-url.yaml", GOOD + "url: file:///etc/passwd\n", "url"),
        ("huge.yaml", GOOD.replace("description: Demo", "description: " + "x" * 300_000 + " Demo"), "file"),
        (
            "big-desc.json",
            '{"name": "J", "slug": "j", "tagline": "t", "category": "c", "pricing": "p",'
            ' "entry_tier": "paid", "description": "' + "d" * 30_000 + '"}',
            "description",
        ),
    ],
)
def test_bad_cards_get_one_line_naming_file_and_field(tmp_path, name, content, field):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as e:
        load_card(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)) and field in msg


# Names that hold text but nothing visible: zero-width and spaces, bidi controls, a BOM and a
# word joiner, a terminal escape and BEL, Hangul fillers, C1 controls (NEL, CSI).
@pytest.mark.parametrize(
    "name", ["   \u200b ", "\u202e\u2066\u2069", "\ufeff\u2060", "\x1b[31m\x07", "\u3164\u115f", "\x85\x9b"]
)
def test_a_field_empty_once_normalised_is_refused_naming_file_and_field(tmp_path, name):
    card = yaml.safe_load(GOOD)
    path = write(tmp_path, "ghost.json", json.dumps({**card, "name": name}))
    with pytest.raises(InputError) as e:
        load_card(path)
    assert (e.value.path, e.value.field) == (str(path), "name") and "\n" not in str(e.value)
    assert "no visible text" in e.value.message


def test_lengths_are_checked_on_the_normalised_text_and_it_validates_again_when_read_back(tmp_path):
    # NFKC makes each U+FDFA eighteen letters: seven of them pass a length check made before it,
    # and the stored name (126 letters) then failed every read.
    card = yaml.safe_load(GOOD)
    long = write(tmp_path, "long.json", json.dumps({**card, "name": "\ufdfa" * 7}))
    with pytest.raises(InputError) as e:
        load_card(long)
    assert e.value.field == "name" and "120" in e.value.message
    hostile = {
        **card, "name": "\ufdfa Tool\u200b  \u202eX\x9b", "tagline": "a\tb\r\nc", "category": " ai   MODELS\u200b",
        "pricing": "Free\x85now", "source": "feed\x07", "url": "https://e.example/\u200bx",
        "description": "Line one\x1b[2J  with  spaces.\n\n\n\n  Line two\t has\u00a0more text here.\u2028end",
    }  # fmt: skip
    got = load_card(write(tmp_path, "hostile.json", json.dumps(hostile)))
    assert got.name.endswith(" Tool X") and got.tagline == "a b c" and got.category == "Models"
    assert got.pricing == "Free now" and got.source == "feed" and got.url == "https://e.example/x"
    assert got.description == "Line one with spaces.\n\nLine two has more text here. end"
    assert ToolCard.model_validate(got.model_dump()) == got


def test_plain_ascii_card_text_takes_the_short_way_to_the_same_text():
    # card_text skips NFKC and the character checks for printable ASCII; every ASCII control,
    # escape and whitespace must still come out as the full normalisation gives it.
    import random
    import re
    import unicodedata

    from shipskip.untrusted import card_text, normalise_untrusted

    def full(value: str, multiline: bool) -> str:
        value = normalise_untrusted(value)
        if not multiline:
            return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in value).split())
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        value = "".join(" " if c != "\n" and unicodedata.category(c) == "Cc" else c for c in value)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(" ".join(ln.split()) for ln in value.split("\n"))).strip()

    rng = random.Random(29)
    alphabet = [chr(i) for i in range(128)] + ["\n", " "] * 8 + ["\u200b", "é"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        for multiline in (False, True):
            assert card_text(text, multiline=multiline) == full(text, multiline), (text, multiline)
    assert card_text("  Plain   name ") == "Plain name"
    assert card_text("a\n\n\n\nb  c", multiline=True) == "a\n\nb c"
