import pytest
from conftest import ROOT

from shipskip.cards import load_card
from shipskip.errors import InputError

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
