import json

import pytest
from conftest import ROOT

from shipskip.errors import ShipskipError
from shipskip.sources import read_source, slugify

GOOD = dict(
    name="Alpha",
    slug="alpha",
    tagline="t",
    category="Agents",
    pricing="Free",
    entry_tier="free",
    description="Alpha is an agent framework with a plugin system and local models.",
)


def test_folder_with_a_bad_card_among_good_ones(tmp_path):
    for p in ("smollm3.yaml", "claw-code.yaml", "quillnote.md"):
        (tmp_path / p).write_text((ROOT / "data" / "tools" / p).read_text())
    (tmp_path / "broken.yaml").write_text("name: Broken\nslug: ../up\n")
    (tmp_path / "notes.txt").write_text("ignored")
    entries = read_source(str(tmp_path))
    good = [e.card.slug for e in entries if e.card]
    bad = [e.error for e in entries if e.error]
    assert sorted(good) == ["claw-code", "quillnote", "smollm3"]
    assert len(bad) == 1 and "broken.yaml" in bad[0] and "slug" in bad[0]


def test_jsonl_with_bad_lines_and_a_duplicate_slug(tmp_path):
    f = tmp_path / "new.jsonl"
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "entry_tier": "maybe"}),
        json.dumps({**GOOD, "name": "Alpha again"}),
        json.dumps({**GOOD, "slug": "beta", "name": "Beta"}),
    ]
    f.write_text("\n".join(lines) + "\n")
    entries = read_source(str(f))
    assert [e.card.slug for e in entries if e.card] == ["alpha", "beta"]
    errors = [e.error for e in entries if e.error]
    assert any(":2:" in e and "JSON" in e for e in errors)
    assert any(":3:" in e and "entry_tier" in e for e in errors)
    assert any(":4:" in e and "twice" in e for e in errors)


def test_rss_feed_file(tmp_path):
    feed = tmp_path / "launches.xml"
    feed.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>Launches</title>
<item><title>Gamma Notes</title><link>https://example.com/gamma</link><category>Writing</category>
<description>&lt;p&gt;Gamma Notes turns voice memos into drafts. It runs on any model.&lt;/p&gt;</description></item>
<item><title></title><description>No title here at all, so this entry cannot become a card.</description></item>
</channel></rss>""")
    entries = read_source(str(feed))
    card = entries[0].card
    assert card.slug == "gamma-notes" and card.category == "Writing" and "<p>" not in card.description
    assert entries[1].card is None and "name" in entries[1].error


def test_unknown_source_kind_is_refused(tmp_path):
    with pytest.raises(ShipskipError):
        read_source(str(tmp_path / "x.csv"))


def test_slugify():
    assert slugify("Claw Code!") == "claw-code" and slugify("../../etc") == "etc"


def test_atom_feed_over_http(tmp_path):
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "feed.atom").write_text("""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>New tools</title>
<entry><title>Delta Draw</title><link href="https://example.com/delta"/><category term="Design"/>
<summary>Delta Draw turns napkin sketches into diagrams with any model you choose.</summary></entry>
</feed>""")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entries = read_source(f"http://127.0.0.1:{server.server_address[1]}/feed.atom")
    finally:
        server.shutdown()
    assert [e.card.slug for e in entries] == ["delta-draw"]
    assert entries[0].card.category == "Design" and entries[0].card.source == "New tools"


def test_hostile_entries_cost_that_entry_only_and_a_bom_is_accepted(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    bom = b"\xef\xbb\xbf"
    (folder / "good.json").write_bytes(bom + json.dumps(GOOD).encode())
    (folder / "digits.yaml").write_text("name: X\nslug: x\nscore: " + "9" * 5000 + "\n")
    (folder / "deep.yaml").write_text("name: X\nslug: y\nextra: " + "[" * 5000 + "]" * 5000 + "\n")
    (folder / "deep.json").write_text('{"name": "Z", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    entries = {e.where.rsplit("/", 1)[-1]: e for e in read_source(str(folder))}
    assert entries["good.json"].card is not None and entries["good.json"].card.slug == "alpha"
    assert "digits" in entries["digits.yaml"].error and "file" in entries["digits.yaml"].error
    assert "nested deeper" in entries["deep.yaml"].error
    assert "nested deeper" in entries["deep.json"].error

    f = tmp_path / "new.jsonl"
    lines = [
        bom + json.dumps(GOOD).encode(),
        b'{"name": "a", "x": ' + b"9" * 5000 + b"}",
        b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b"\xff\xfe not utf-8",
        json.dumps({**GOOD, "slug": "beta", "name": "Beta"}).encode(),
    ]
    f.write_bytes(b"\n".join(lines) + b"\n")
    entries = read_source(str(f))
    assert [e.card.slug for e in entries if e.card] == ["alpha", "beta"]
    errors = [e.error for e in entries if e.error]
    assert [e.split(":")[1] for e in errors] == ["2", "3", "4"]
    assert "digits" in errors[0] and "nested deeper" in errors[1] and "UTF-8" in errors[2]


def test_a_single_bad_card_file_is_one_refused_entry(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("name: X\nslug: x\nextra: " + "{a: " * 3000 + "}" * 3000 + "\n")
    (entry,) = read_source(str(f))
    assert entry.card is None and entry.error.startswith(str(f))
