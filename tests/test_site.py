"""`shipskip site`: the whole static site, its links, feed and sitemap, rebuilt incrementally."""

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import feedparser
import pytest
from conftest import make_card, make_take

from shipskip import site
from shipskip.settings import get_settings

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


def seed(store, slug, name, verdicts, scores, **card):
    c = make_card(
        slug=slug, name=name, description=f"{name} is a tool that does things for developers.", **card
    )
    run = store.begin_run(c)
    takes = [
        make_take(p, v, s, f"{name} take by {p} with enough words to read.")
        for p, v, s in zip(PERSONAS, verdicts, scores, strict=True)
    ]
    store.commit_review(run, c, takes)
    return c


@pytest.fixture
def shelf(store):
    seed(store, "alpha", "Alpha", ["ship"] * 4 + [None], [80, 70, 75, 90, None], category="Agents")
    seed(
        store,
        "beta",
        "Beta",
        ["skip", "skip", "ship", "ship", None],
        [30, 20, 75, 75, None],
        category="Agents",
    )
    seed(store, "gamma", "Gamma <b>", ["skip"] * 5, [10, 20, 30, 40, 50], category="Agents")
    seed(store, "delta", "Delta", ["ship"] * 5, [80] * 5, category="AI Models")
    return store


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.found.append(value)


def crawl(out: Path) -> tuple[set[Path], list[str]]:
    """Every page reachable from the index, and every link that resolves to no file."""
    seen: set[Path] = set()
    broken: list[str] = []
    todo = [out / "index.html"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        parser = _Links()
        parser.feed(page.read_text())
        for link in parser.found:
            parsed = urlparse(link)
            if parsed.scheme in ("http", "https") or link.startswith("data:image/"):
                continue
            assert not parsed.scheme and not parsed.netloc, f"{page}: {link} is neither relative nor http(s)"
            target = (page.parent / urldefrag(link).url).resolve()
            if not target.is_file():
                broken.append(f"{page.relative_to(out)} -> {link}")
            elif target.suffix == ".html":
                todo.append(target)
    return seen, broken


@pytest.mark.slow
def test_site_builds_every_page_kind_and_every_link_resolves(shelf, isolated):
    out = isolated / "out"
    report = site.build(shelf, get_settings())
    assert not report.left_out and not report.removed
    for rel in ("index.html", "feed.xml", "sitemap.xml", "categories/index.html", "categories/agents.html",
                "categories/models.html", "tools/alpha.html", "badges/alpha.svg",
                "embed/alpha.html", "reviewers/skeptic.html", "digest/index.html",
                "compare/alpha-vs-beta.html", "compare/delta-vs-alpha.html"):  # fmt: skip
        assert (out / rel).is_file() or rel == "compare/delta-vs-alpha.html", rel
    assert not (out / "compare/delta-vs-alpha.html").exists()  # nearest in the same category only
    assert not list(out.rglob("*.md"))  # Markdown twins only with SHIPSKIP_SITE_MARKDOWN
    assert (out / "compare/alpha-vs-gamma.html").is_file()
    reached, broken = crawl(out)
    assert broken == []
    names = {p.relative_to(out).as_posix() for p in reached}
    # From the index a reader reaches every tool, category, reviewer, comparison and digest.
    for rel in ("tools/alpha.html", "tools/delta.html", "categories/agents.html", "reviewers/founder.html",
                "compare/alpha-vs-beta.html", "embed/alpha.html"):  # fmt: skip
        assert rel in names, rel
    assert any(n.startswith("digest/20") for n in names)
    tool = (out / "tools" / "alpha.html").read_text()
    assert 'href="../categories/agents.html"' in tool and 'href="../index.html"' in tool
    assert 'href="../reviewers/skeptic.html"' in tool and 'href="../compare/alpha-vs-beta.html"' in tool
    assert "See all Agents alternatives" in tool
    assert "Local build" in tool and 'rel="canonical"' not in tool
    # The category ranks by panel ship %: Alpha (100%) before Beta (50%) before Gamma (0%).
    cat = (out / "categories" / "agents.html").read_text()
    assert cat.index("Alpha") < cat.index("Beta") < cat.index("Gamma &lt;b&gt;")
    index = (out / "index.html").read_text()
    assert "Ship · 4 ship / 0 skip" in index and "<b>" not in index.replace("<b>Tool", "")


@pytest.mark.slow
def test_the_feed_parses_and_the_sitemap_lists_the_pages(shelf, isolated, monkeypatch):
    out = isolated / "out"
    site.build(shelf, get_settings())
    local = feedparser.parse((out / "feed.xml").read_text())
    assert not local.bozo, local.get("bozo_exception")
    assert len(local.entries) == 4 and "Local build" in local.feed.subtitle
    assert {e.link for e in local.entries} >= {"tools/alpha.html", "tools/delta.html"}
    assert "Local build" in (out / "sitemap.xml").read_text()

    monkeypatch.setenv("SHIPSKIP_SITE_URL", "https://ship.example/reviews/")
    report = site.build(shelf, get_settings())
    assert "feed.xml" in report.written and "tools/alpha.html" in report.written  # the URL is an input
    public = feedparser.parse((out / "feed.xml").read_text())
    assert not public.bozo
    assert "https://ship.example/reviews/tools/gamma.html" in {e.link for e in public.entries}
    gamma = next(e for e in public.entries if e.link.endswith("gamma.html"))
    assert gamma.title.startswith("Gamma <b> verdict: Skip")  # escaped by the XML writer, read back whole
    locs = [
        e.text
        for e in ET.parse(out / "sitemap.xml")
        .getroot()
        .iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")
    ]
    assert (
        "https://ship.example/reviews/index.html" in locs
        and "https://ship.example/reviews/tools/beta.html" in locs
    )
    assert all(loc.startswith("https://ship.example/reviews/") for loc in locs)
    tool = (out / "tools" / "alpha.html").read_text()
    assert '<link rel="canonical" href="https://ship.example/reviews/tools/alpha.html">' in tool
    assert "&lt;iframe src=&#34;https://ship.example/reviews/embed/alpha.html&#34;" in tool
    assert "href=&#34;https://ship.example/reviews/tools/alpha.html&#34;" in tool


@pytest.mark.slow
def test_a_second_build_writes_nothing_and_a_vote_rewrites_only_that_tools_pages(shelf, isolated):
    out = isolated / "out"
    first = site.build(shelf, get_settings())
    assert first.unchanged == 0 and len(first.written) == first.pages >= 28  # one file a page: no twins
    again = site.build(shelf, get_settings())
    assert again.written == [] and again.unchanged == first.pages

    shelf.add_vote("delta", "ship", "ana")
    after_vote = site.build(shelf, get_settings())
    # Its tool page and its embed show the count; the listings show no votes and stay.
    assert sorted(after_vote.written) == ["embed/delta.html", "tools/delta.html"]
    assert "100% Ship (1 / 1 voter)" in (out / "tools" / "delta.html").read_text()

    # A rerun changes Beta's verdict: its pages, the comparisons that show it, the listings.
    card = shelf.tool("beta")
    run = shelf.begin_run(card, kind="rerun", rerun_reason="licence clarified")
    shelf.commit_review(run, card, [make_take("skeptic", "ship", 66, "Beta now states its licence clearly.")])
    rerun = set(site.build(shelf, get_settings()).written)
    assert {"tools/beta.html", "badges/beta.svg", "compare/alpha-vs-beta.html",
            "categories/agents.html", "index.html", "feed.xml", "reviewers/skeptic.html"} <= rerun  # fmt: skip
    assert not any("delta" in p for p in rerun)  # another category, untouched
    assert "Skeptic updated" in (out / "tools" / "beta.html").read_text()


@pytest.mark.slow
def test_a_deleted_file_is_written_again_and_pages_of_a_removed_tool_are_removed(shelf, isolated):
    out = isolated / "out"
    site.build(shelf, get_settings())
    (out / "tools" / "alpha.html").unlink()
    assert site.build(shelf, get_settings()).written == ["tools/alpha.html"]

    with shelf.transaction() as con:  # a tool taken out of the store by hand
        for table in ("takes", "runs", "tool_versions", "tools"):
            con.execute(f"DELETE FROM {table} WHERE slug = 'gamma'")
    report = site.build(shelf, get_settings())
    assert "tools/gamma.html" in report.removed and "compare/alpha-vs-gamma.html" in report.removed
    assert not (out / "tools" / "gamma.html").exists() and not (out / "badges" / "gamma.svg").exists()
    assert "gamma" not in (out / "index.html").read_text()
    assert crawl(out)[1] == []


@pytest.mark.slow
def test_markdown_twins_are_written_when_asked_and_removed_when_no_longer(shelf, isolated, monkeypatch):
    out = isolated / "out"
    monkeypatch.setenv("SHIPSKIP_SITE_MARKDOWN", "1")
    with_twins = site.build(shelf, get_settings())
    twins = sorted(p for p in with_twins.written if p.endswith(".md"))
    assert {"tools/alpha.md", "tools/delta.md", "reviewers/skeptic.md"} <= set(twins)
    assert any(p.startswith("digest/20") for p in twins)
    assert "# Alpha" in (out / "tools" / "alpha.md").read_text()
    shelf.add_vote("delta", "ship", "ana")
    assert sorted(site.build(shelf, get_settings()).written) == [
        "embed/delta.html", "tools/delta.html", "tools/delta.md"
    ]  # fmt: skip

    monkeypatch.setenv("SHIPSKIP_SITE_MARKDOWN", "0")
    without = site.build(shelf, get_settings())
    assert sorted(p for p in without.removed if p.endswith(".md")) == twins  # none left stale
    assert not list(out.rglob("*.md")) and crawl(out)[1] == []


@pytest.mark.slow
def test_every_page_kind_says_when_the_demo_model_made_it(store, isolated):
    from typer.testing import CliRunner

    from shipskip.cli import app

    for slug in ("demo-tool", "demo-two"):
        card = make_card(slug=slug, name=slug.title())
        takes = [
            make_take(p, "ship", 70).model_copy(update={"model": "SmolLM2-135M-Instruct"}) for p in PERSONAS
        ]
        store.commit_review(store.begin_run(card), card, takes)
    site.build(store, get_settings())
    out = isolated / "out"
    pages = ["index.html", "categories/developer-tools.html", "tools/demo-tool.html", "embed/demo-tool.html",
             "reviewers/builder.html", "compare/demo-tool-vs-demo-two.html"]  # fmt: skip
    pages.append(next((out / "digest").glob("20*.html")).relative_to(out).as_posix())
    assert CliRunner().invoke(app, ["trends"]).exit_code == 0
    pages.append("trends.html")
    for rel in pages:
        assert "embedded demo model" in (out / rel).read_text(), rel
    assert "embedded demo model" not in (out / "categories" / "index.html").read_text()  # names no tool


def test_a_build_holds_the_file_only_while_it_reads_so_another_process_writes_meanwhile(
    file_store, isolated, monkeypatch
):
    """Planning and rendering are CPU, not reads: while they run, another process (a reader's
    vote, an ingest) can open the file for writing. A read connection held over the whole plan
    kept every writer out for seconds on a big site."""
    import subprocess
    import sys

    seed(file_store, "alpha", "Alpha", ["ship"] * 5, [80] * 5, category="Agents")
    seed(file_store, "beta", "Beta", ["skip"] * 5, [20] * 5, category="Agents")
    writes = []
    planned = site.plan

    def plan_while_another_process_writes(*args, **kwargs):
        code = (
            "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('CREATE TABLE IF NOT EXISTS t (x INT)')"
        )
        writes.append(subprocess.run([sys.executable, "-c", code, str(file_store.db.path)],
                                     capture_output=True, text=True, timeout=120))  # fmt: skip
        return planned(*args, **kwargs)

    monkeypatch.setattr(site, "plan", plan_while_another_process_writes)
    report = site.build(file_store, get_settings())
    assert report.written and len(writes) == 1
    assert writes[0].returncode == 0, writes[0].stderr


def test_nearest_takes_the_closest_ship_rates_in_the_category():
    from datetime import datetime

    from shipskip.models import CommunityVotes
    from shipskip.render import ReviewedTool

    def tool(slug, ships):
        takes = tuple(make_take(p, "ship" if i < ships else "skip", 80 if i < ships else 20)
                      for i, p in enumerate(PERSONAS))  # fmt: skip
        return ReviewedTool(make_card(slug=slug, name=slug), takes, CommunityVotes(), datetime(2026, 1, 1))

    ranked = sorted(
        [tool("a", 5), tool("b", 4), tool("c", 1), tool("d", 0), tool("e", 3)], key=site.ship_order
    )
    near = site.nearest(ranked, 2)
    assert [t.card.slug for t in near["b"]] == ["a", "e"]
    assert [t.card.slug for t in near["d"]] == ["c", "e"]
    assert all(len(v) == 2 and all(o.card.slug != k for o in v) for k, v in near.items())
    assert site.nearest(ranked, 0)["a"] == []


@pytest.mark.slow
def test_no_page_name_comes_from_anything_but_a_checked_slug(shelf, isolated):
    out = isolated / "out"
    site.build(shelf, get_settings())
    for f in out.rglob("*"):
        assert re.fullmatch(r"[a-z0-9./-]+|digest/\d{4}-W\d{2}\.(html|md)", f.relative_to(out).as_posix()), f


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_flows_publish_what_they_reviewed_with_an_artifact_listing_the_pages(fake, isolated):
    import shutil

    from conftest import ROOT
    from prefect.client.orchestration import get_client

    from flows.scheduled import rerun_persona, review_new_tools
    from flows.site import weekly_digest

    inbox = isolated / "inbox"
    inbox.mkdir()
    for name in ("smollm3.yaml", "claw-code.yaml"):
        shutil.copy(ROOT / "data" / "tools" / name, inbox / name)
    out = isolated / "out"
    state = review_new_tools(source=str(inbox), return_state=True)
    assert sorted(state.result()["reviewed"]) == ["claw-code", "smollm3"]
    for rel in (
        "index.html",
        "feed.xml",
        "tools/smollm3.html",
        "tools/claw-code.html",
        "categories/index.html",
    ):
        assert (out / rel).is_file(), rel
    assert crawl(out)[1] == []

    rerun = rerun_persona(tool="smollm3", persona="skeptic", reason="licence clarified", return_state=True)
    assert rerun.is_completed()
    assert "licence clarified" in (out / "tools" / "smollm3.html").read_text()
    weekly = weekly_digest(return_state=True)
    assert weekly.result()["written"] == []  # nothing changed since the rerun published

    runs = {state.state_details.flow_run_id: "ingest", rerun.state_details.flow_run_id: "rerun"}
    with get_client(sync_client=True) as client:
        tables = {runs[a.flow_run_id]: a for a in client.read_artifacts()
                  if a.key == "site-pages" and a.flow_run_id in runs}  # fmt: skip
    assert set(tables) == {"ingest", "rerun"}
    assert "tools/smollm3.html" in tables["ingest"].data and "index.html" in tables["ingest"].data
    assert "tools/smollm3.html" in tables["rerun"].data and "tools/claw-code.md" not in tables["rerun"].data


@pytest.mark.slow
def test_shipskip_site_builds_without_a_prefect_server_and_names_the_file_to_open(shelf, isolated):
    from typer.testing import CliRunner

    from shipskip.cli import app

    res = CliRunner().invoke(app, ["site"])
    assert res.exit_code == 0, res.output
    assert "removed" in res.output and "index.html" in res.output
    again = CliRunner().invoke(app, ["site"])
    assert "0 files written" in " ".join(again.output.split())


@pytest.mark.slow
def test_chromium_walks_the_site_and_no_page_scrolls_sideways_on_a_phone(shelf, isolated, monkeypatch):
    from cdp import chromium

    monkeypatch.setenv("SHIPSKIP_SITE_URL", "https://reviews.example-with-a-long-name.org/ai-tools/shipskip")
    card = shelf.tool("alpha")
    run = shelf.begin_run(card, kind="rerun", rerun_reason="a licence was added to the repository")
    shelf.commit_review(
        run, card, [make_take("skeptic", "ship", 66, "Alpha now states its licence clearly.")]
    )
    site.build(shelf, get_settings())
    out = isolated / "out"
    walk = [("index", "index.html", "a[href='categories/agents.html']"),
            ("category", "categories/agents.html", "a[href='../tools/alpha.html']"),
            ("tool", "tools/alpha.html", "a[href='../compare/alpha-vs-beta.html']"),
            ("compare", "compare/alpha-vs-beta.html", "a[href='../reviewers/skeptic.html']"),
            ("reviewer", "reviewers/skeptic.html", None),
            ("digest", next((out / "digest").glob("20*.html")).relative_to(out).as_posix(), None)]  # fmt: skip
    with chromium(isolated / "chrome") as page:
        for px in (1280, 390):
            page.width(px)
            page.load((out / "index.html").as_uri())
            for name, rel, next_link in walk:
                assert page.js("location.href") == (out / rel).as_uri(), name
                wide = page.js("document.documentElement.scrollWidth")
                assert wide <= px, f"{name} at {px} px is {wide} px wide"
                page.screenshot(isolated.parent / f"site-{name}-{px}.png")
                if next_link:  # the reader follows the link, as a click would
                    href = page.js(f'document.querySelector("{next_link}").href')
                    page.load(href)
                elif name == "reviewer":
                    page.load((out / walk[-1][1]).as_uri())


@pytest.mark.slow
def test_a_build_rendered_in_forked_processes_writes_the_same_site(shelf, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_SITE_PROCESSES", "1")
    one = site.build(shelf, get_settings())
    from shipskip import site_files

    monkeypatch.setattr(site_files, "_FORK_FROM", 1)  # the demo store is far below the real threshold
    monkeypatch.setenv("SHIPSKIP_SITE_PROCESSES", "2")
    monkeypatch.setenv("SHIPSKIP_OUT_DIR", str(isolated / "forked"))
    two = site.build(shelf, get_settings())
    assert sorted(two.written) == sorted(one.written)
    for rel in one.written:  # the same bytes, whichever process rendered a page
        assert (isolated / "forked" / rel).read_bytes() == (isolated / "out" / rel).read_bytes(), rel
    assert crawl(isolated / "forked")[1] == []
