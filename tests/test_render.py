import html
import re
import subprocess
from datetime import date

import pytest
from conftest import ROOT, make_card, make_take

from shipskip.models import CommunityVotes
from shipskip.publish import write_compare, write_digest, write_tool
from shipskip.render import ReviewedTool, compare_page

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


def seed(store, slug, name, verdicts, scores, texts=None, **card):
    c = make_card(slug=slug, name=name, **card)
    run = store.begin_run(c)
    takes = [
        make_take(p, v, s, (texts or {}).get(p, f"{name} take by {p} with enough words to read."))
        for p, v, s in zip(PERSONAS, verdicts, scores, strict=True)
    ]
    store.commit_review(run, c, takes)
    return c


@pytest.fixture
def pair(store):
    seed(store, "claw-code", "Claw Code", ["ship", "skip", "ship", "ship", None], [80, 45, 80, 80, None],
         category="Developer Tools", pricing="Open Source (MIT)", entry_tier="paid")  # fmt: skip
    seed(store, "smollm3", "SmolLM3", ["ship", "ship", "ship", None, "skip"], [87, 78, 82, None, 52],
         category="AI Models", pricing="Free (Apache 2.0)")  # fmt: skip
    return store


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_compare_page_shows_the_seed_pages_content(pair, isolated):
    path, _ = write_compare(pair, isolated / "out", "claw-code", "smollm3")
    assert path == (isolated / "out" / "compare" / "claw-code-vs-smollm3.html").resolve()
    page = path.read_text()
    text = " ".join(text_of(page).split())
    assert "Claw Code vs SmolLM3" in text
    assert text.count("Ship · 3 ship / 1 skip") == 2
    assert "75%" in text and "Panel ship" in text
    assert "No community votes yet" in text
    assert "Open Source (MIT)" in text and "Free (Apache 2.0)" in text
    assert "80/100 · ship" in text and "45/100 · skip" in text and "52/100 · skip" in text
    assert text.count("No panel take") == 2
    assert "Models" in text and "Developer Tools" in text
    assert "SmolLM2" not in text and "model m" in text  # the model that spoke
    # Self-contained: no external fetches of any kind.
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page
    md = path.with_suffix(".md").read_text()
    assert "| Panel verdict | Ship · 3 ship / 1 skip | Ship · 3 ship / 1 skip |" in md


def test_untrusted_html_renders_as_text(store, isolated):
    evil = "<script>alert('x')</script> and <img src=x onerror=alert(1)> in the description."
    seed(store, "evil", "Evil <b>Tool</b>", ["ship"] * 5, [90] * 5,
         texts={"builder": "Evil <script>steal()</script> take."}, description=evil)  # fmt: skip
    path, _ = write_tool(store, isolated / "out", "evil")
    page = path.read_text()
    assert "<script>" not in page and "<img src=x" not in page and "<b>Tool" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;script&gt;steal()" in page
    md = path.with_suffix(".md").read_text()
    assert "<script>" not in md


def test_abstaining_persona_renders_no_panel_take_and_pct_over_the_rest(store, isolated):
    seed(store, "three", "Three", ["ship", "ship", "skip", None, None], [70, 70, 20, None, None])
    path, panels = write_tool(store, isolated / "out", "three")
    text = text_of(path.read_text())
    assert panels[0].verdict.ship_pct == 67
    assert "67%" in text and text.count("No panel take") == 2


@pytest.mark.slow
def test_votes_show_apart_from_the_panel(pair, isolated):
    pair.add_vote("smollm3", "skip", "ana")
    path, panels = write_compare(pair, isolated / "out", "claw-code", "smollm3")
    assert panels[1].votes == CommunityVotes(ship=0, skip=1)
    assert "0% Ship (0 / 1 voter)" in text_of(path.read_text())
    assert panels[1].verdict.line == "Ship · 3 ship / 1 skip"  # votes do not move the panel


def test_digest_lists_the_weeks_verdicts(pair, isolated):
    from shipskip.publish import current_week

    path, panels = write_digest(pair, isolated / "out", current_week())
    assert [p.card.slug for p in panels] == ["claw-code", "smollm3"]
    empty, none = write_digest(pair, isolated / "out", "2020-W01")
    assert none == [] and "no tools" in empty.read_text()


def test_render_is_pure_and_rejects_nothing_it_is_given(store):
    c = make_card()
    t = ReviewedTool(card=c, takes=(), votes=CommunityVotes(), reviewed_at=None)
    html_text, md = compare_page(t, t, __import__("datetime").date(2026, 11, 24))
    assert "No verdict" in html_text and "not yet" in md


@pytest.mark.slow
def test_page_opens_in_headless_chromium(pair, isolated):
    path, _ = write_compare(pair, isolated / "out", "claw-code", "smollm3")
    shot = isolated / "out" / "compare.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={isolated / 'chrome'}"]  # fmt: skip
    dom = subprocess.run(["chromium", *flags, "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert 'id="scorecard"' in dom and "87/100 · ship" in dom
    subprocess.run(["chromium", *flags, "--window-size=420,2400", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120)  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000
    # Keep a copy where a person can look at it after the run.
    keep = isolated.parent / "compare-phone.png"
    keep.write_bytes(shot.read_bytes())

    # The history block after a rerun, and the trends page, at phone width.
    from shipskip.analytics import trend_points, trend_summary
    from shipskip.render import trends_page

    card = pair.tool("claw-code")
    run = pair.begin_run(card, kind="rerun", rerun_reason="licence clarified")
    pair.commit_review(run, card, [make_take("skeptic", "ship", 66, "Claw Code now states its licence.")])
    tool, _ = write_tool(pair, isolated / "out", "claw-code")
    points = trend_points(pair)
    trends = isolated / "out" / "trends.html"
    trends.write_text(trends_page(points, trend_summary(points), "all", date.today()))
    for name, page, expect in (("history", tool, "Skeptic updated"), ("trends", trends, 'id="weekly"')):
        dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        assert expect in dom, name
        shot = isolated / "out" / f"{name}.png"
        subprocess.run(["chromium", *flags, "--window-size=390,1800", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120)  # fmt: skip
        assert shot.is_file() and shot.stat().st_size > 10_000, name
        (isolated.parent / f"{name}-phone.png").write_bytes(shot.read_bytes())


def test_ungrounded_and_sampled_takes_are_marked(store, isolated):
    c = seed(store, "marks", "Marks", ["ship"] * 5, [70] * 5)
    run = store.begin_run(c, kind="rerun", rerun_reason="k=3")
    t = make_take("builder", "ship", 75, "Marks is lovely.").model_copy(
        update={"grounded": False, "samples": 3, "score_spread": 12}
    )
    store.commit_review(run, c, [t])
    text = text_of(write_tool(store, isolated / "out", "marks")[0].read_text())
    # The badge on the take, and its reason once in the legend under the scorecard.
    assert text.count("ungrounded") == 2 and "median of 3, spread 12" in text
    assert "ungrounded the take names no fact from the tool's description" in " ".join(text.split())


def test_pages_and_show_explain_a_checklist_score_by_its_criteria(store, isolated):
    from typer.testing import CliRunner

    from shipskip.cli import app
    from shipskip.models import Criterion

    c = make_card(slug="gridcast", name="Gridcast")
    run = store.begin_run(c)
    graded = make_take(
        "builder", "ship", 72, "Gridcast ships an MIT CLI I could run before lunch."
    ).model_copy(
        update={
            "scoring": "checklist",
            "criteria": [
                Criterion(id="open_licence", label="open licence", weight=12.0, p_yes=0.81, baseline=0.4),
                Criterion(id="paywall", label="<b>pay</b> first", weight=-8.0, p_yes=0.7, baseline=0.4),
                Criterion(id="api", label="an API", weight=5.0, p_yes=0.1, baseline=0.4),
                # Held, but against a problem it does not have, or weighed at zero: it moved nothing.
                Criterion(id="lock_in", label="locks you in", weight=-6.0, p_yes=0.2, baseline=0.4),
                Criterion(id="crowded", label="crowded field", weight=0.0, p_yes=0.9, baseline=0.4),
            ],
        }
    )
    others = [make_take(p, None, None) for p in PERSONAS[1:]]
    store.commit_review(run, c, [graded, *others])
    path, _ = write_tool(store, isolated / "out", "gridcast")
    page = path.read_text()
    assert "For:</b> open licence<" in page and "Against:</b> &lt;b&gt;pay&lt;/b&gt; first<" in page
    assert "Lacking:</b> an API<" in page
    assert "locks you in" not in page and "crowded field" not in page
    md = path.with_suffix(".md").read_text()
    assert "for: open licence; against: \\<b\\>pay\\</b\\> first; lacking: an API" in md
    stored = store.current_takes("gridcast")[0]
    assert stored.criteria[0].p_yes == 0.81 and stored.scoring == "checklist"
    shown = CliRunner().invoke(app, ["show", "gridcast"], terminal_width=200)
    # The explanation may wrap inside its table cell: read the cell's text back as one line.
    flat = " ".join(re.sub(r"[│┃]", " ", shown.output).split())
    assert shown.exit_code == 0 and "for: open licence; against: <b>pay</b> first; lacking: an API" in flat
    rows = store.query("SELECT criterion, met FROM take_criteria WHERE slug = 'gridcast' ORDER BY criterion")
    assert rows == [
        {"criterion": "api", "met": False},
        {"criterion": "crowded", "met": True},
        {"criterion": "lock_in", "met": False},
        {"criterion": "open_licence", "met": True},
        {"criterion": "paywall", "met": True},
    ]


@pytest.mark.slow
def test_pages_show_reruns_links_meta_and_the_demo_model(pair, isolated):
    from shipskip.models import Take, Usage

    store = pair
    card = store.tool("claw-code").model_copy(update={"url": "https://example.com/claw?x=<b>"})
    run = store.begin_run(card, kind="rerun", rerun_reason="licence clarified")
    newer = Take(persona="skeptic", verdict="ship", score=68, text="Claw Code now states its licence plainly.",
                 model="SmolLM2-135M-Instruct", prompt_version="4", prompt_hash="h", usage=Usage())  # fmt: skip
    store.commit_review(run, card, [newer])
    path, _ = write_compare(store, isolated / "out", "claw-code", "smollm3")
    page = path.read_text()
    text = " ".join(text_of(page).split())
    # The rerun, its reason and the take it replaced.
    assert "Skeptic updated" in text and "licence clarified (was 45, skip)" in text
    assert "Earlier take" in text and "Claw Code take by skeptic" in text
    # Links: the tool's own site (http/https only, encoded), and the tool pages it links to.
    assert 'href="https://example.com/claw?x=%3Cb%3E"' in page
    assert (
        'href="../tools/claw-code.html"' in page and (isolated / "out" / "tools" / "claw-code.html").is_file()
    )
    assert '<meta name="description"' in page and 'property="og:title"' in page
    assert "embedded demo model" in text
    md = path.with_suffix(".md").read_text()
    assert "licence clarified (was 45, skip)" in md and "embedded demo model" in md
    tool_md = (isolated / "out" / "tools" / "claw-code.md").read_text()
    assert "Claw Code verdict: Ship" in tool_md and "What it is" in tool_md
    assert "<https://example.com/claw?x=%3Cb%3E>" in tool_md


def test_a_non_web_address_never_becomes_a_link(store, isolated):
    card = make_card(slug="evil", name="Evil")
    run = store.begin_run(card)
    store.commit_review(run, card, [make_take(p, "ship", 70) for p in PERSONAS])
    # A row written before URLs were checked: the page still refuses to link it.
    with store.transaction() as con:
        con.execute("UPDATE tools SET url = 'javascript:alert(1)' WHERE slug = 'evil'")
    path, _ = write_tool(store, isolated / "out", "evil")
    assert "javascript:" not in path.read_text() and "javascript:" not in path.with_suffix(".md").read_text()


@pytest.mark.slow
def test_tool_pages_have_similar_tools_a_badge_and_its_snippet(store, isolated):
    import xml.etree.ElementTree as ET

    for slug, name, verdicts, scores in (
        ("alpha", "Alpha <b>", ["ship", "ship", "skip", "ship", None], [80, 70, 40, 75, None]),
        ("beta", "Beta", ["skip", "skip", "skip", "ship", None], [30, 20, 40, 75, None]),
    ):
        seed(store, slug, name, verdicts, scores, category="Agents")
    seed(store, "gamma", "Gamma", ["ship"] * 5, [80] * 5, category="Video")
    path, _ = write_tool(store, isolated / "out", "alpha")
    page = path.read_text()
    assert 'href="beta.html"' in page and "Gamma" not in page  # same category only
    assert 'href="../compare/alpha-vs-beta.html"' in page
    assert (isolated / "out" / "compare" / "alpha-vs-beta.html").is_file()
    badge = (isolated / "out" / "badges" / "alpha.svg").read_text()
    root = ET.fromstring(badge)  # well-formed, the name escaped
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["Alpha <b>", "Ship · 75%"]
    assert (
        "&lt;img src=&#34;badges/alpha.svg&#34;" in page or "&lt;img src=&quot;badges/alpha.svg&quot;" in page
    )
    assert "data:image/svg+xml;base64," in page


def test_a_reviewer_page_shows_the_lens_and_the_record(pair, isolated):
    from shipskip.publish import write_reviewer

    path = write_reviewer(pair, isolated / "out", ROOT / "prompts", "skeptic")
    text = " ".join(text_of(path.read_text()).split())
    assert "The Skeptic" in text and "What tires it" in text
    assert "45/100 · skip" in text and "78/100 · ship" in text
    assert "Developer Tools" in text and "0%" in text and "100%" in text  # ship rate per category
    assert 'href="../tools/claw-code.html"' in path.read_text()
    assert "| Claw Code | 45/100 · skip |" in path.with_suffix(".md").read_text()
    with pytest.raises(Exception, match="critic"):
        write_reviewer(pair, isolated / "out", ROOT / "prompts", "critic")


@pytest.mark.slow
def test_compare_with_the_demo_model_note_still_reads_back_its_verdicts(store, isolated):
    """The demo note sits above the decision table; the order check must still find it."""
    from typer.testing import CliRunner

    from shipskip.cli import app

    for slug, name in (("one", "One"), ("two", "Two")):
        card = make_card(slug=slug, name=name)
        takes = [
            make_take(p, "ship", 70).model_copy(update={"model": "SmolLM2-135M-Instruct"}) for p in PERSONAS
        ]
        store.commit_review(store.begin_run(card), card, takes)
    res = CliRunner().invoke(app, ["compare", "one", "two"])
    assert res.exit_code == 0, res.output
    md = (isolated / "out" / "compare" / "one-vs-two.md").read_text()
    assert "embedded demo model" in md and "warning" not in res.output


@pytest.mark.slow
def test_a_composed_take_is_marked_with_its_reason_on_pages_and_in_show(store, isolated, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    c = seed(store, "composed", "Composed", ["ship"] * 5, [70] * 5)
    run = store.begin_run(c, kind="rerun", rerun_reason="composed")
    t = make_take("skeptic", "skip", 41, "I skip Composed, which its card describes as a demo thing.")
    store.commit_review(run, c, [t.model_copy(update={"composed": True})])
    page = write_tool(store, isolated / "out", "composed")[0]
    html_page = page.read_text()
    # The badge on the take carries its reason as a title, and the legend says it in words.
    assert html_page.count('class="flag badge-composed"') == 2
    assert 'title="every take the model wrote stated something the card does not say' in html_page
    text = " ".join(text_of(html_page).split())
    assert (
        "composed from the checklist every take the model wrote stated something the card does not say"
        in text
    )
    markdown = page.with_suffix(".md").read_text()
    assert "(composed from the checklist)" in markdown
    assert "*composed from the checklist*: every take the model wrote" in markdown
    # Takes without a badge add no legend.
    plain = seed(store, "plain", "Plain", ["ship"] * 5, [70] * 5)
    assert 'id="badge-legend"' not in write_tool(store, isolated / "out", plain.slug)[0].read_text()
    monkeypatch.chdir(isolated)
    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(store.path))
    shown = CliRunner().invoke(app, ["show", "composed"], terminal_width=200)
    assert shown.exit_code == 0 and "(composed from the checklist)" in shown.output


def test_a_take_the_checks_cannot_judge_gets_no_badge(store, isolated):
    c = seed(store, "unjudged", "Unjudged", ["ship"] * 5, [70] * 5)
    run = store.begin_run(c, kind="rerun", rerun_reason="no grounding check")
    store.commit_review(run, c, [make_take("builder", "ship", 75, "Unjudged is lovely.")])  # grounded: None
    page = write_tool(store, isolated / "out", "unjudged")[0].read_text()
    assert 'class="flag' not in page and "ungrounded" not in page


@pytest.mark.slow
def test_flagged_on_the_pages_agrees_with_the_views(store, isolated):
    """A flagged seat that abstained is left out of nothing: the page marks no injection and
    panel_verdicts counts none. A flagged seat that spoke is marked and counted as flagged."""
    c = seed(store, "flags", "Flags", ["ship", "ship", "skip", None, "ship"], [70, 70, 40, None, 70])
    run = store.begin_run(c, kind="rerun", rerun_reason="abstained, flagged")
    store.commit_review(run, c, [make_take("creator", None, None).model_copy(update={"suspicious": True})])

    def page_and_view():
        page = " ".join(text_of(write_tool(store, isolated / "out", "flags")[0].read_text()).split())
        view = store.query("SELECT flagged FROM panel_verdicts WHERE slug = 'flags'")[0]["flagged"]
        return page, view

    page, view = page_and_view()
    assert view == 0 and "injection flagged" not in page and "flagged, not counted" not in page
    run = store.begin_run(c, kind="rerun", rerun_reason="spoke, flagged")
    store.commit_review(run, c, [make_take("skeptic", "ship", 90, "Flags took it.").model_copy(
        update={"suspicious": True})])  # fmt: skip
    page, view = page_and_view()
    assert view == 1 and "injection flagged" in page and "1 flagged, not counted" in page


@pytest.mark.slow
def test_digest_writes_only_its_own_page_and_compare_reports_every_file(pair, isolated):
    from shipskip import usecases
    from shipskip.publish import current_week
    from shipskip.settings import get_settings

    out = isolated / "out"
    write_digest(pair, out, current_week())
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        f"digest/{current_week()}.html",
        f"digest/{current_week()}.md",
    ]
    done = usecases.compare(pair, get_settings(), "claw-code", "smollm3")
    on_disk = {p for p in out.rglob("*.*") if "digest" not in p.parts}
    assert {p.resolve() for p in done.files} == {p.resolve() for p in on_disk}
    assert any(p.name == "claw-code.svg" for p in done.files) and done.path in done.files


NO_SIGNAL = (
    "not counted: on this model the Futurist's lens has shown no signal (kappa \u22120.03 on 101 tools)"
)


def test_a_seat_with_no_signal_is_shown_but_not_counted_on_pages_in_the_view_and_in_show(
    store, isolated, monkeypatch
):
    from typer.testing import CliRunner

    from shipskip.cli import app

    c = make_card(slug="nosignal", name="Nosignal")
    takes = [
        make_take(p, v, s, f"Nosignal take by {p}, a demo thing.")
        for p, v, s in zip(PERSONAS, ["ship", "skip", "skip", "ship", "ship"], [80, 40, 30, 75, 70], strict=True)
    ]  # fmt: skip
    takes[2] = takes[2].model_copy(update={"counted": False, "not_counted_reason": NO_SIGNAL})
    store.commit_review(store.begin_run(c), c, takes)
    row = store.query(
        "SELECT label, ship, skip, not_counted, ship_pct FROM panel_verdicts WHERE slug = 'nosignal'"
    )
    assert row == [{"label": "Ship", "ship": 3, "skip": 1, "not_counted": 1, "ship_pct": 75}]
    page = write_tool(store, isolated / "out", "nosignal")[0]
    text = " ".join(text_of(page.read_text()).split())
    # The take is on the page, with its reason, and the verdict says a seat was left out.
    assert "Nosignal take by futurist" in text and NO_SIGNAL in text
    assert "Ship · 3 ship / 1 skip · 1 persona not counted (no signal on this model)" in text
    assert 'class="flag badge-not_counted"' in page.read_text()
    md = page.with_suffix(".md").read_text()
    assert "Nosignal take by futurist" in md and "lens has shown no signal" in md
    monkeypatch.chdir(isolated)
    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(store.path))
    shown = CliRunner().invoke(app, ["show", "nosignal"], terminal_width=250)
    flat = " ".join(re.sub(r"[│┃]", " ", shown.output).split())
    assert shown.exit_code == 0 and NO_SIGNAL in flat and "1 persona not counted" in flat


@pytest.mark.slow
def test_a_verdict_likely_to_flip_reads_contested_on_the_page_badge_and_in_show(store, isolated, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    def panel(slug, name, p_ship, category):
        c = make_card(slug=slug, name=name, category=category)
        takes = [
            make_take(persona, "ship" if p >= 0.5 else "skip", 70 if p >= 0.5 else 45, f"{name} take, a demo thing.")
            .model_copy(update={"p_ship": p})
            for persona, p in zip(PERSONAS, p_ship, strict=True)
        ]  # fmt: skip
        store.commit_review(store.begin_run(c), c, takes)

    panel("split", "Split", [0.6, 0.55, 0.45, 0.58, 0.4], "Models")
    panel("sure", "Sure", [0.99, 0.98, 0.97, 0.99, 0.96], "Agents")  # not on each other's pages
    monkeypatch.chdir(isolated)
    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(store.path))
    out = isolated / "out"
    split = " ".join(text_of(write_tool(store, out, "split")[0].read_text()).split())
    assert "contested (" in split and "% chance it would flip)" in split
    assert "contested" in (out / "badges" / "split.svg").read_text()
    sure = write_tool(store, out, "sure")[0].read_text()
    assert "contested" not in sure and "contested" not in (out / "badges" / "sure.svg").read_text()
    flips = {r["slug"]: r["flip_chance"] for r in store.query("SELECT slug, flip_chance FROM panel_verdicts")}
    assert flips["split"] > 0.35 > 0.01 > flips["sure"]
    shown = CliRunner().invoke(app, ["show", "split"], terminal_width=250)
    assert shown.exit_code == 0 and "contested (" in shown.output
    # The line is a setting: raised above the chance, the same panel is no longer contested.
    monkeypatch.setenv("SHIPSKIP_CONTESTED_ABOVE", "0.9")
    calm = CliRunner().invoke(app, ["show", "split"], terminal_width=250)
    assert calm.exit_code == 0 and "contested" not in calm.output
