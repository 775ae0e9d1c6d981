"""`shipskip web`: serve the static site and take readers' votes and "Helpful?" marks.

The site stays a folder of files; this server adds only what a file cannot do. A tool page is
rendered from the store on each request, so its counts are the store's (what `shipskip vote`
and the web cast are one count), with the reader's forms on it. Every other path is a file of
OUT_DIR, served as it is.

Readers are told apart by a random id in a signed cookie; each form carries a token derived
from that id and the server's key, so a page on another site cannot post for them. A body
over the size limit, a client over its rate, a bad token or an unknown tool gets a 4xx and
stores nothing. Writes are queued and committed in small batches by one thread, each batch a
short transaction: DuckDB has one writer per file, and between batches the file is free for
an ingest in another process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ShipskipError
from .models import SLUG_RE
from .roster import personas
from .settings import Settings
from .store import Store

COOKIE = "shipskip_voter"
# The same policy the static pages carry in their meta tag, plus what only a header can say.
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'")  # fmt: skip
# Writes wait this long for others to join their batch: one transaction for many clicks.
_BATCH_WINDOW_S = 0.02
_BATCH_MAX = 500
# The file stays open between batches until another process asks for it or no vote comes
# for this long: opening and closing it took 80% of a batch's time (300 ms of 450 under load).
_LINGER_S = 0.5


class _Batcher:
    """One thread that writes queued marks in batches (`Store.add_marks`); each caller waits
    for its own item's result."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.db.linger(_LINGER_S)
        self.queue: deque[tuple[tuple[str, str, str, str], Future[str]]] = deque()
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="shipskip-web-writer", daemon=True)
        self.thread.start()

    def submit(self, kind: str, slug: str, value: str, voter: str) -> str:
        done: Future[str] = Future()
        with self.ready:
            self.queue.append(((kind, slug, value, voter), done))
            self.ready.notify()
        return done.result(timeout=120)

    def _run(self) -> None:
        while True:
            with self.ready:
                if not self.queue:
                    self.ready.wait(timeout=_BATCH_WINDOW_S)
                idle = not self.queue
            if idle:  # checked often, so a process asking for the file waits a tick at most
                self.store.db.let_go()
                continue
            time.sleep(_BATCH_WINDOW_S)  # let the clicks of the same moment join
            with self.ready:
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), _BATCH_MAX))]
            try:
                results = self.store.add_marks([item for item, _ in batch])
            except Exception as exc:  # every caller of the batch hears of it
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                done.set_result(result)


class _RateLimit:
    """At most `per_minute` posts per client address in any minute (a sliding window)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, deque[float]] = {}
        self.guard = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self.guard:
            if len(self.seen) > 100_000:  # forget idle clients rather than grow without end
                self.seen = {k: v for k, v in self.seen.items() if v and now - v[-1] < 60}
            times = self.seen.setdefault(client, deque())
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


class _Signer:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, what: str) -> str:
        digest = hmac.new(self.key, what.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def cookie(self, voter: str) -> str:
        return f"{voter}.{self._mac('voter|' + voter)}"

    def voter(self, cookie: str | None) -> str | None:
        """The voter id a cookie names, when its signature holds."""
        if not cookie or "." not in cookie:
            return None
        voter, _, mac = cookie.partition(".")
        ok = len(voter) == 32 and voter.isalnum() and hmac.compare_digest(mac, self._mac("voter|" + voter))
        return voter if ok else None

    def token(self, voter: str) -> str:
        return self._mac("csrf|" + voter)


class _Headers:
    """The security headers on every response. Plain ASGI: Starlette's BaseHTTPMiddleware runs
    each request through an extra task and stream, a cost every vote paid."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # An embed page is meant to sit in another site's frame; nothing else is.
        embed = scope["path"].startswith("/embed/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = _CSP + ("" if embed else "; frame-ancestors 'none'")
                if not embed:
                    headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make_app(store: Store, settings: Settings) -> Starlette:
    """The web app for the site in OUT_DIR, its writes through `store`."""
    from .publish import load_panel, tool_neighbours
    from .render import tool_page

    out_dir: Path = settings.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    key = settings.web_secret.get_secret_value().encode() if settings.web_secret else secrets.token_bytes(32)
    signer, limit, batcher = _Signer(key), _RateLimit(settings.web_posts_per_minute), _Batcher(store)

    def reader(request: Request) -> tuple[str, bool]:
        """The reader's voter id, and whether it is new (its cookie still to be set)."""
        known = signer.voter(request.cookies.get(COOKIE))
        return (known, False) if known else (secrets.token_hex(16), True)

    def with_cookie(response: Response, request: Request, voter: str, new: bool) -> Response:
        if new:
            response.set_cookie(COOKIE, signer.cookie(voter), max_age=365 * 86400, httponly=True,
                                samesite="lax", secure=request.url.scheme == "https")  # fmt: skip
        return response

    def render_tool(slug: str, voter: str) -> str | None:
        try:
            with store.reading():
                if store.tool(slug) is None:
                    return None
                panel = load_panel(store, slug)
                similar = tool_neighbours(store, panel)
                forms = {"csrf": signer.token(voter), "mine": store.voter_choice(slug, "web-" + voter),
                         "helpful": store.helpful_counts(slug)}  # fmt: skip
        except ShipskipError:
            return None
        html, _ = tool_page(panel, datetime.now(UTC).date(), similar, settings.site_url, forms)
        return html

    async def tool(request: Request) -> Response:
        slug = request.path_params["slug"]
        voter, new = reader(request)
        page = await anyio.to_thread.run_sync(render_tool, slug, voter) if SLUG_RE.fullmatch(slug) else None
        if page is None:
            return PlainTextResponse("No such tool.", status_code=404)
        response = HTMLResponse(page, headers={"Cache-Control": "no-store"})
        return with_cookie(response, request, voter, new)

    async def form(request: Request) -> dict[str, str] | Response:
        """The posted form, or the 4xx that refuses it (checked before anything is stored)."""
        client = request.client.host if request.client else "unknown"
        if not limit.allow(client):
            return PlainTextResponse("Too many posts from this address; wait a minute.", status_code=429)
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            return PlainTextResponse("Send the page's form.", status_code=415)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > settings.web_max_body_bytes):
            return PlainTextResponse("Request body too large.", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.web_max_body_bytes:
                return PlainTextResponse("Request body too large.", status_code=413)
        try:
            fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), strict_parsing=False).items()}
        except UnicodeDecodeError:
            return PlainTextResponse("The form is not UTF-8.", status_code=400)
        voter = signer.voter(request.cookies.get(COOKIE))
        token = fields.get("csrf", "")
        if voter is None or not hmac.compare_digest(token, signer.token(voter)):
            return PlainTextResponse(
                "Missing or wrong form token; reload the page and try again.", status_code=403
            )
        fields["voter"] = voter
        return fields

    async def mark(request: Request, kind: str, field: str, allowed: tuple[str, ...]) -> Response:
        slug = request.path_params["slug"]
        if not SLUG_RE.fullmatch(slug):
            return PlainTextResponse("No such tool.", status_code=404)
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        value = fields.get(field, "")
        if value not in allowed:
            return PlainTextResponse(f"{field}: must be one of {', '.join(allowed)}.", status_code=400)
        result = await anyio.to_thread.run_sync(batcher.submit, kind, slug, value, "web-" + fields["voter"])
        if result == "unknown":
            return PlainTextResponse("No such tool (or no take from that persona).", status_code=404)
        return RedirectResponse(f"/tools/{slug}.html", status_code=303)

    async def vote(request: Request) -> Response:
        return await mark(request, "vote", "choice", ("ship", "skip"))

    async def helpful(request: Request) -> Response:
        return await mark(request, "helpful", "persona", personas())

    async def home(request: Request) -> Response:
        return RedirectResponse("/index.html", status_code=307)

    routes = [
        Route("/", home),
        Route("/tools/{slug}.html", tool),
        Route("/vote/{slug}", vote, methods=["POST"]),
        Route("/helpful/{slug}", helpful, methods=["POST"]),
        Mount("/", StaticFiles(directory=out_dir, html=True, follow_symlink=False)),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Headers)
    return app


def serve(store: Store, settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(store, settings), host=host, port=port, log_level="warning", server_header=False)
