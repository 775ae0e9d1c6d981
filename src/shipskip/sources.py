"""Where new tools come from: a folder of cards, a JSON Lines file, or an RSS/Atom feed."""

from __future__ import annotations

import html
import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import feedparser

# The provider's HTTP client (openai 3 speaks httpx2), with its per-call deadline transport.
import httpx2 as httpx

from .cards import CARD_SUFFIXES, MAX_CARD_BYTES, load_card, load_json, parse_card
from .errors import InputError, ShipskipError
from .models import ToolCard
from .settings import Settings, get_settings
from .transport import DeadlineTransport

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Entry:
    """One item of a source: a valid card, or the one-line reason it was refused."""

    where: str
    card: ToolCard | None = None
    error: str | None = None


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-") or "untitled"


def _strip_html(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _from_file(path: Path) -> Entry:
    try:
        return Entry(str(path), card=load_card(path))
    except ShipskipError as exc:
        return Entry(str(path), error=str(exc))


def _from_folder(folder: Path) -> list[Entry]:
    return [_from_file(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in CARD_SUFFIXES]


def _from_jsonl(path: Path) -> list[Entry]:
    out = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ShipskipError(f"{path}: file: unreadable ({type(exc).__name__})") from None
    for n, line_bytes in enumerate(raw.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        if not line_bytes.strip():
            continue
        where = f"{path}:{n}"
        try:
            # Each line is decoded and parsed on its own, so one bad line costs that line only.
            if len(line_bytes) > MAX_CARD_BYTES:
                size = len(line_bytes)
                raise ShipskipError(f"{where}: (line): is {size} bytes; the limit is {MAX_CARD_BYTES}")
            try:
                line = line_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ShipskipError(f"{where}: (line): is not UTF-8 (byte {exc.start})") from None
            out.append(Entry(where, card=parse_card(load_json(line, where, field="(line)"), where)))
        except ShipskipError as exc:
            out.append(Entry(where, error=str(exc)))
    return out


def _download(url: str, timeout_s: float, max_bytes: int) -> bytes:
    """The body of a feed URL: http(s) only, at most `max_bytes`, within `timeout_s` in all."""
    limit = f"the limit is {max_bytes} bytes (SHIPSKIP_FEED_MAX_BYTES)"
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    # Redirects are followed to http(s) addresses only: httpx refuses any other scheme.
    with (
        httpx.Client(
            timeout=timeout, transport=DeadlineTransport(timeout_s), follow_redirects=True
        ) as client,
        client.stream("GET", url) as resp,
    ):
        if resp.status_code >= 400:
            raise InputError(url, "feed", f"the server answered {resp.status_code}")
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise InputError(url, "feed", f"is {declared} bytes; {limit}")
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise InputError(url, "feed", f"is over {max_bytes} bytes; {limit}")
        return bytes(body)


def fetch_feed(url: str, timeout_s: float, max_bytes: int) -> bytes:
    """A feed URL's body, or one line saying why not, within `timeout_s` whatever the server does.

    httpx's timeouts apply to each read, and a server that sends its headers and then stalls
    holds a read for the whole read timeout; so the download runs in a thread of its own and
    is given up once the deadline passes (the thread ends at its own read timeout).
    """
    found = _SCHEME.match(url)
    scheme = (found.group(1) or "").lower() if found else ""
    if scheme not in ("http", "https"):
        raise InputError(url, "source", "only http:// and https:// feeds are fetched")
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["body"] = _download(url, timeout_s, max_bytes)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="feed-fetch", daemon=True)
    worker.start()
    worker.join(timeout_s)
    late = InputError(url, "feed", f"no whole reply within {timeout_s:g} s (SHIPSKIP_FEED_TIMEOUT_S)")
    if worker.is_alive():
        raise late
    error = box.get("error")
    if isinstance(error, ShipskipError):
        raise error
    if isinstance(error, httpx.TimeoutException):
        raise late
    if isinstance(error, httpx.HTTPError):
        raise InputError(url, "feed", f"could not be fetched ({type(error).__name__})")
    if isinstance(error, BaseException):
        raise error
    return box["body"]  # type: ignore[return-value]


def _read_feed_file(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                path, "file", f"is {size} bytes; the limit is {max_bytes} (SHIPSKIP_FEED_MAX_BYTES)"
            )
        return path.read_bytes()
    except OSError as exc:
        raise InputError(path, "file", f"unreadable ({type(exc).__name__})") from None


def _from_feed(source: str, body: bytes) -> list[Entry]:
    # Bytes in a stream: feedparser would treat a bare string as a path or URL to open itself.
    parsed = feedparser.parse(io.BytesIO(body))
    if parsed.bozo and not parsed.entries:
        raise ShipskipError(f"{source}: feed: could not be parsed ({parsed.bozo_exception})")
    out = []
    for n, item in enumerate(parsed.entries, 1):
        where = f"{source}#{n}"
        title = _strip_html(item.get("title", ""))
        summary = _strip_html(item.get("summary", "") or item.get("description", ""))
        tags = [t.get("term", "") for t in item.get("tags", []) if t.get("term")]
        data = {
            "name": title,
            "slug": slugify(title) if title else "",
            "tagline": (summary.split(". ")[0] if summary else title)[:200],
            "category": tags[0] if tags else "Uncategorised",
            "pricing": item.get("shipskip_pricing") or "Not stated",
            "entry_tier": (item.get("shipskip_tier") or "free"),
            "description": summary,
            "source": parsed.feed.get("title", "feed")[:200],
            "url": item.get("link", "")[:500],
        }
        try:
            out.append(Entry(where, card=parse_card(data, where)))
        except ShipskipError as exc:
            out.append(Entry(where, error=str(exc)))
    return out


# The files a source may be besides a folder or a URL: JSON Lines, a feed, one card.
SOURCE_SUFFIXES = frozenset({".jsonl", ".xml", ".rss", ".atom", *CARD_SUFFIXES})


def read_source(source: str, settings: Settings | None = None) -> list[Entry]:
    """Every entry of a source, in order; a slug seen twice is refused the second time.

    A URL is fetched over http(s) only, within SHIPSKIP_FEED_TIMEOUT_S and up to
    SHIPSKIP_FEED_MAX_BYTES; any other scheme (file://, ftp://...) is refused."""
    settings = settings or get_settings()
    path = Path(source)
    if _SCHEME.match(source) and "://" in source:
        entries = _from_feed(source, fetch_feed(source, settings.feed_timeout_s, settings.feed_max_bytes))
    elif path.is_dir():
        entries = _from_folder(path)
    elif path.suffix.lower() == ".jsonl":
        entries = _from_jsonl(path)
    elif path.suffix.lower() in (".xml", ".rss", ".atom"):
        entries = _from_feed(str(path), _read_feed_file(path, settings.feed_max_bytes))
    elif path.suffix.lower() in CARD_SUFFIXES:
        entries = [_from_file(path)]
    else:
        raise ShipskipError(f"{source}: source: not a folder, .jsonl, feed file or URL")
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.card and e.card.slug in seen:
            e = Entry(e.where, error=f"{e.where}: slug: '{e.card.slug}' appears twice in this source")
        elif e.card:
            seen.add(e.card.slug)
        out.append(e)
    return out
