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


class _Hostile:
    """A loopback HTTP server that misbehaves as asked: stalls after its headers, or streams
    more bytes than any feed should have."""

    def __init__(self, kind: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = 0
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                import time

                hostile.requests += 1
                self.send_response(200)
                self.send_header("content-type", "application/rss+xml")
                if kind == "declared":
                    self.send_header("content-length", str(50 * 1024 * 1024))
                if kind == "stall":
                    self.send_header("content-length", "5000")
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    if kind == "stall":
                        self.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
                        self.wfile.flush()
                        time.sleep(60)  # and never another byte
                        return
                    item = (b"<item><title>Tool %d</title><description>A tool that does a thing well."
                            b"</description></item>")  # fmt: skip
                    self.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>')
                    for n in range(20_000):  # about 2 MB, unless the client hangs up first
                        self.wfile.write(item % n)
                    self.wfile.write(b"</channel></rss>")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.rss"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _in_thread(fn, limit_s: float):
    """Run fn in a thread for at most limit_s: (finished, result or exception)."""
    import threading

    box: dict = {}

    def work():
        try:
            box["out"] = fn()
        except BaseException as exc:
            box["out"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(limit_s)
    return not t.is_alive(), box.get("out")


def test_a_feed_that_stalls_after_its_headers_ends_within_its_deadline_and_stores_nothing(
    isolated, monkeypatch
):
    from conftest import ingest

    from shipskip.errors import InputError
    from shipskip.settings import get_settings

    monkeypatch.setenv("SHIPSKIP_FEED_TIMEOUT_S", "1")
    deadline = get_settings().feed_timeout_s
    server = _Hostile("stall")
    try:
        # The bound comes from the setting: the deadline, and as much again for slack.
        finished, out = _in_thread(lambda: ingest(server.url), 2 * deadline)
    finally:
        server.close()
    assert finished, "the ingest was still waiting on the stalled feed"
    assert isinstance(out, InputError) and out.field == "feed" and "\n" not in str(out)
    assert server.url in str(out) and "SHIPSKIP_FEED_TIMEOUT_S" in str(out)
    assert not (isolated / "shipskip.duckdb").exists() or not _stored_rows(isolated)


def _stored_rows(isolated) -> int:
    from shipskip.store import Store

    store = Store(isolated / "shipskip.duckdb")
    return sum(store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in ("runs", "takes", "tools"))


@pytest.mark.parametrize("kind", ["streamed", "declared"])
def test_a_feed_bigger_than_the_cap_is_refused_in_one_line(monkeypatch, kind):
    from shipskip.errors import InputError
    from shipskip.settings import get_settings

    monkeypatch.setenv("SHIPSKIP_FEED_MAX_BYTES", "65536")
    monkeypatch.setenv("SHIPSKIP_FEED_TIMEOUT_S", "20")
    server = _Hostile(kind)
    try:
        finished, out = _in_thread(lambda: read_source(server.url, get_settings()), 2 * 20)
    finally:
        server.close()
    assert finished and isinstance(out, InputError), out
    assert out.field == "feed" and "65536" in str(out) and "SHIPSKIP_FEED_MAX_BYTES" in str(out)


@pytest.mark.parametrize("scheme", ["file://", "FILE://", "ftp://", "gopher://"])
def test_only_http_and_https_feeds_are_fetched(tmp_path, scheme):
    from shipskip.errors import InputError

    feed = tmp_path / "feed.xml"
    feed.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item><title>Gamma'
                    "</title><description>Gamma does a thing for people who need it.</description></item>"
                    "</channel></rss>")  # fmt: skip
    with pytest.raises(InputError) as e:
        read_source(f"{scheme}{feed}")
    assert e.value.field == "source" and "only http:// and https://" in str(e.value)
