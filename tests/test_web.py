"""`shipskip web`: readers vote and mark takes helpful from the page; bad posts store nothing."""

import re
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import make_card, make_take
from starlette.testclient import TestClient

from shipskip import site
from shipskip.settings import get_settings
from shipskip.store import Store
from shipskip.web import make_app

PERSONAS = ["builder", "skeptic", "futurist", "creator", "founder"]


@pytest.fixture
def served(file_store, isolated, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_WEB_POSTS_PER_MINUTE", "20")
    for slug, name in (("alpha", "Alpha"), ("beta", "Beta")):
        card = make_card(slug=slug, name=name, category="Agents")
        takes = [make_take(p, "ship", 70, f"{name} helps developers format data.") for p in PERSONAS]
        file_store.commit_review(file_store.begin_run(card), card, takes)
    site.build(file_store, get_settings())
    return file_store


def token_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def votes_in(store: Store) -> list[dict]:
    return store.query("SELECT slug, vote, voter FROM votes ORDER BY slug, voter")


@pytest.mark.slow
def test_a_reader_votes_changes_the_vote_and_the_page_shows_the_stores_count(served):
    client = TestClient(make_app(served, get_settings()))
    page = client.get("/tools/alpha.html")
    assert page.status_code == 200 and "No community votes yet" in page.text
    assert client.cookies.get("shipskip_voter")
    token = token_of(page.text)
    res = client.post("/vote/alpha", data={"csrf": token, "choice": "ship"}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/tools/alpha.html"
    again = client.get("/tools/alpha.html").text
    assert "100% Ship (1 / 1 voter)" in again and "Your vote: Ship" in again
    client.post("/vote/alpha", data={"csrf": token, "choice": "skip"})
    assert "0% Ship (0 / 1 voter)" in client.get("/tools/alpha.html").text
    # One count with the shell's votes.
    served.add_vote("alpha", "ship", "ana")
    assert "50% Ship (1 / 2 voters)" in client.get("/tools/alpha.html").text
    assert len(votes_in(served)) == 2


@pytest.mark.slow
def test_helpful_marks_count_once_per_reader(served):
    client = TestClient(make_app(served, get_settings()))
    token = token_of(client.get("/tools/alpha.html").text)
    for _ in range(2):
        assert client.post("/helpful/alpha", data={"csrf": token, "persona": "skeptic"}).status_code == 200
    assert served.helpful_counts("alpha") == {"skeptic": 1}
    assert "1 found this helpful" in client.get("/tools/alpha.html").text


@pytest.mark.slow
def test_forged_oversized_unknown_and_too_many_posts_store_nothing(served):
    app = make_app(served, get_settings())
    client = TestClient(app)
    token = token_of(client.get("/tools/alpha.html").text)
    stranger = TestClient(app)  # no cookie of ours: a page on another site posting for the reader
    assert stranger.post("/vote/alpha", data={"choice": "ship"}).status_code == 403
    assert stranger.post("/vote/alpha", data={"choice": "ship", "csrf": token}).status_code == 403
    assert client.post("/vote/alpha", data={"choice": "ship"}).status_code == 403
    assert client.post("/vote/alpha", data={"choice": "ship", "csrf": token + "x"}).status_code == 403
    assert client.post("/vote/alpha", data={"choice": "maybe", "csrf": token}).status_code == 400
    assert client.post("/vote/nope", data={"choice": "ship", "csrf": token}).status_code == 404
    assert client.post("/vote/..%2Fetc", data={"choice": "ship", "csrf": token}).status_code in (404, 405)
    assert client.post("/helpful/alpha", data={"persona": "critic", "csrf": token}).status_code == 400
    big = {"choice": "ship", "csrf": token, "pad": "x" * 4000}
    assert client.post("/vote/alpha", data=big).status_code == 413
    assert client.post("/vote/alpha", json={"choice": "ship", "csrf": token}).status_code == 415
    assert client.get("/tools/nope.html").status_code == 404
    assert votes_in(served) == [] and served.helpful_counts("alpha") == {}
    # The limit: 20 posts a minute from one address, refused or not; then 429.
    codes = [client.post("/vote/beta", data={"choice": "ship", "csrf": token}).status_code for _ in range(12)]
    assert codes[-1] == 429 and 303 not in codes[-2:]
    assert len(votes_in(served)) == 1  # the few posts inside the limit were one reader's one vote


def test_the_site_is_served_with_the_static_pages_headers(served):
    client = TestClient(make_app(served, get_settings()))
    for path in ("/index.html", "/tools/alpha.html", "/categories/agents.html"):
        res = client.get(path)
        assert res.status_code == 200, path
        csp = res.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert res.headers["x-content-type-options"] == "nosniff" and res.headers["x-frame-options"] == "DENY"
    embed = client.get("/embed/alpha.html")
    assert embed.status_code == 200 and "frame-ancestors" not in embed.headers["content-security-policy"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/index.html"
    assert client.get("/../shipskip.duckdb").status_code == 404
    # The static page has no forms: they need the server's token.
    assert 'name="csrf"' not in (get_settings().out_dir / "tools" / "alpha.html").read_text()


@pytest.mark.slow
def test_votes_from_many_readers_at_once_are_batched_and_none_is_lost(served, monkeypatch):
    monkeypatch.setenv("SHIPSKIP_WEB_POSTS_PER_MINUTE", "1000")
    app = make_app(served, get_settings())
    clients = [TestClient(app) for _ in range(12)]
    tokens = [token_of(c.get("/tools/beta.html").text) for c in clients]
    errors: list[int] = []

    def cast(i: int) -> None:
        for choice in ("ship", "skip", "ship"):
            res = clients[i].post(
                "/vote/beta", data={"choice": choice, "csrf": tokens[i]}, follow_redirects=False
            )
            if res.status_code != 303:
                errors.append(res.status_code)

    threads = [threading.Thread(target=cast, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = votes_in(served)
    assert len(rows) == 12 and {r["vote"] for r in rows} == {"ship"}


@pytest.mark.slow
def test_chromium_votes_ship_sees_the_count_and_a_second_vote_changes_it(served, isolated):
    """A real browser on the real server: click Ship, reload, see the count; click Skip, the
    count of voters stays one. Driven over the DevTools protocol."""
    from cdp import chromium, free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "shipskip", "web", "--port", str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/index.html")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the web server did not start"
                time.sleep(0.3)
        with chromium(isolated / "chrome") as page:

            def community() -> str:
                return str(page.js("document.getElementById('community').innerText"))

            url = f"http://127.0.0.1:{port}/tools/alpha.html"
            page.load(url)
            page.js("document.getElementById('vote-ship').click()")
            time.sleep(1.5)
            page.load(url)  # a reload: the count comes from the store
            assert "100% Ship (1 / 1 voter)" in community()
            page.js("document.getElementById('vote-skip').click()")
            time.sleep(1.5)
            page.load(url)
            assert "0% Ship (0 / 1 voter)" in community()
            # A forged post: the reader's own cookie rides along (as it would from another
            # site's form), but there is no token. Refused, and nothing changes.
            cookies = {c["name"]: c["value"] for c in page.call("Network.getCookies")["cookies"]}
            assert "shipskip_voter" in cookies
            forged = httpx.post(
                f"http://127.0.0.1:{port}/vote/alpha", cookies=cookies, data={"choice": "ship"}
            )
            assert forged.status_code == 403
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = votes_in(served)
    assert len(rows) == 1 and rows[0]["vote"] == "skip"
