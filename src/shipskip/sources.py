"""Where new tools come from: a folder of cards, a JSON Lines file, or an RSS/Atom feed."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import feedparser

from .cards import CARD_SUFFIXES, MAX_CARD_BYTES, load_card, load_json, parse_card
from .errors import ShipskipError
from .models import ToolCard


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


def _from_feed(source: str) -> list[Entry]:
    parsed = feedparser.parse(source)
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


def read_source(source: str) -> list[Entry]:
    """Every entry of a source, in order; a slug seen twice is refused the second time."""
    path = Path(source)
    if source.startswith(("http://", "https://")):
        entries = _from_feed(source)
    elif path.is_dir():
        entries = _from_folder(path)
    elif path.suffix.lower() == ".jsonl":
        entries = _from_jsonl(path)
    elif path.suffix.lower() in (".xml", ".rss", ".atom"):
        entries = _from_feed(str(path))
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
