"""The site's own pages, which only `shipskip.site` writes: the index, category pages, the
digest archive, embeds, the Atom feed and the sitemap. Pure, as `render` is."""

from __future__ import annotations

from datetime import date, datetime

from .render import ReviewedTool, category_slug, page_meta, render_template


def _site_ctx(site_url: str | None, path: str, root: str = "../") -> dict[str, object]:
    """What every site page is told about where it sits: its root and, with a public address,
    its canonical URL."""
    base = f"{site_url.rstrip('/')}/" if site_url else None
    return {"root": root, "site_url": base, "canonical": f"{base}{path}" if base else None}


def index_page(days: list[tuple[date, list[ReviewedTool]]], generated: date, site_url: str | None) -> str:
    tools = [t for _, ts in days for t in ts]
    return render_template(
        "index.html.j2", days=days, count=len(tools), generated=generated, title="Latest verdicts",
        **{**page_meta(tools), "description": f"The panel's verdicts on {len(tools)} AI tools, newest first"},
        **_site_ctx(site_url, "index.html", root=""),
    )  # fmt: skip


def category_page(
    category: str,
    ranked: list[tuple[ReviewedTool, list[ReviewedTool]]],
    generated: date,
    site_url: str | None,
) -> str:
    tools = [t for t, _ in ranked]
    return render_template(
        "category.html.j2", category=category, tools=ranked, generated=generated, title=f"{category} tools",
        **{**page_meta(tools), "description": f"{len(tools)} {category} tools ranked by the shipskip panel"},
        **_site_ctx(site_url, f"categories/{category_slug(category)}.html"),
    )  # fmt: skip


def categories_page(categories: list[str], generated: date, site_url: str | None) -> str:
    """Every category, by name only: its count is on its own page, so a review that adds a tool
    to a category rewrites that page and leaves this one as it was."""
    return render_template(
        "categories.html.j2", categories=categories, generated=generated, title="Categories", demo=False,
        description="Every category the shipskip panel has reviewed",
        **_site_ctx(site_url, "categories/index.html"),
    )  # fmt: skip


def digest_index_page(weeks: list[str], generated: date, site_url: str | None) -> str:
    """Every week, newest first, by name only (its count is on its own page, as above)."""
    return render_template(
        "digest_index.html.j2", weeks=weeks, generated=generated, title="Weekly digests", demo=False,
        description="Every week of the shipskip panel's verdicts", **_site_ctx(site_url, "digest/index.html"),
    )  # fmt: skip


def embed_page(t: ReviewedTool, generated: date, site_url: str | None) -> str:
    ctx = _site_ctx(site_url, f"embed/{t.card.slug}.html")
    href = f"{ctx['site_url']}tools/{t.card.slug}.html" if site_url else f"../tools/{t.card.slug}.html"
    return render_template(
        "embed.html.j2", tools=[t], tool_href=href, generated=generated, title=f"{t.card.name} verdict",
        **page_meta([t]), **ctx,
    )  # fmt: skip


ATOM = "http://www.w3.org/2005/Atom"


def atom_feed(tools: list[ReviewedTool], updated: datetime, site_url: str | None) -> str:
    """An Atom feed of the latest verdicts. Built as XML, not from a template, so every text is
    escaped by the XML writer. Without a public address its links are relative and its ids are
    tag: URIs of a local build, and its subtitle says so."""
    import xml.etree.ElementTree as ET

    base = f"{site_url.rstrip('/')}/" if site_url else ""

    def stamp(at: datetime | None) -> str:
        return (at or updated).strftime("%Y-%m-%dT%H:%M:%SZ")

    def uid(path: str) -> str:
        return f"{base}{path}" if base else f"tag:shipskip.local,2026:{path}"

    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "shipskip: the panel's latest verdicts"
    ET.SubElement(feed, f"{{{ATOM}}}subtitle").text = (
        "AI tools reviewed by a five-persona panel" if base
        else "Local build: links are relative to this folder (set SHIPSKIP_SITE_URL for public links)"
    )  # fmt: skip
    ET.SubElement(feed, f"{{{ATOM}}}id").text = uid("feed.xml")
    newest = max((t.reviewed_at for t in tools if t.reviewed_at), default=updated)
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = stamp(newest)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=f"{base}feed.xml")
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=f"{base}index.html")
    ET.SubElement(ET.SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = "shipskip panel"
    for t in tools:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = t.share
        ET.SubElement(entry, f"{{{ATOM}}}id").text = uid(f"tools/{t.card.slug}.html")
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = stamp(t.reviewed_at)
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", type="text/html",
                      href=f"{base}tools/{t.card.slug}.html")  # fmt: skip
        ET.SubElement(entry, f"{{{ATOM}}}category", term=t.card.category)
        notes = [
            n for n in ("made with the embedded demo model" if t.demo else "", *t.calibration_notes) if n
        ]
        summary = f"{t.card.tagline}. Panel ship {t.verdict.pct_text}." + (
            f" ({'; '.join(notes)})" if notes else ""
        )
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = summary
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def sitemap_xml(paths: list[str], site_url: str | None) -> str:
    """sitemap.xml. The protocol wants absolute addresses; a local build has none, so it lists
    paths relative to the folder and says so in a comment."""
    from xml.sax.saxutils import escape

    base = f"{site_url.rstrip('/')}/" if site_url else ""
    head = "" if base else "<!-- Local build: set SHIPSKIP_SITE_URL for absolute addresses. -->\n"
    rows = "".join(f"  <url><loc>{escape(base + p)}</loc></url>\n" for p in paths)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + head
        + '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n' + rows + "</urlset>\n"
    )  # fmt: skip
