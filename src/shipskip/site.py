"""The whole static site under OUT_DIR, rebuilt incrementally.

Every page is described before anything is rendered: its path, and a digest of its inputs (the
stored rows it shows, the site URL, the templates). The digests of the last build are stored
(`page_digests`), so a page is rendered and written only when its digest changed or its file is
gone; a review or a rerun rewrites the pages that show that tool and no others. Files are
written to a temporary name and renamed (`writes`), leaf pages first, then the category pages,
then the index, feed and sitemap, so nothing a reader can reach links to a page not yet
written. Pages recorded by an earlier build that no longer belong (a tool removed from the
store) are deleted last, once nothing links to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from importlib import resources

from . import __version__
from .personas import PromptSet, load_prompts
from .render import (
    Fragments,
    ReviewedTool,
    badge_svg,
    category_slug,
    compare_html,
    compare_name,
    digest_page,
    reviewer_page,
    tool_page,
)
from .render_site import (
    atom_feed,
    categories_page,
    category_page,
    digest_index_page,
    embed_page,
    index_page,
    sitemap_xml,
)
from .settings import Settings
from .site_files import Page, cpus, files_in, remove_files, render_and_write
from .site_panels import digest, listing_summary, load_panels, nearest, ship_order, text_digest
from .store import Store

# Feed entries: the latest verdicts only, as feed readers expect.
_FEED_ENTRIES = 50


@dataclass
class SiteReport:
    """What a build did: files written, pages left as they were, files removed, and one line
    per tool left out because its stored rows fail validation."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    pages: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "left_out": self.left_out,
        }


def _templates_digest() -> str:
    """Changed templates or a new shipskip version rebuild every page."""
    h = hashlib.sha256(__version__.encode())
    for entry in sorted(resources.files("shipskip.templates").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".j2"):
            h.update(entry.name.encode() + entry.read_bytes())
    return h.hexdigest()[:16]


def _twin(path: str) -> str:
    return path.removesuffix(".html") + ".md"


def _iso_week(at: datetime) -> str:
    y, w, _ = at.isocalendar()
    return f"{y}-W{w:02d}"


def plan(
    rows: dict[str, list[dict]],
    records: dict[str, tuple[list[dict], list[dict]]],
    prompts: PromptSet,
    settings: Settings,
    today: date,
    left_out: list[str],
) -> list[Page]:
    """Every page of the site, with its digest; nothing is rendered yet. From the rows the
    store gave (`Store.site_rows`, and each persona's `Store.reviewer_record`): no I/O."""
    site = settings.site_url
    twins = settings.site_markdown
    salt = digest(_templates_digest(), site, twins)
    own: dict[str, str] = {}
    panels = load_panels(rows, left_out, own, settings.contested_above)
    by_slug = {t.card.slug: t for t in panels}
    # Each tool's listing summary, digested once: the pages that list a tool hash these short
    # strings, not the summaries again (a tool is listed on a dozen pages).
    summary = {t.card.slug: digest(listing_summary(t)) for t in panels}
    categories: dict[str, list[ReviewedTool]] = {}
    for t in panels:
        categories.setdefault(t.card.category, []).append(t)
    near: dict[str, list[ReviewedTool]] = {}
    for tools in categories.values():
        tools.sort(key=ship_order)
        near.update(nearest(tools, settings.compare_neighbours))

    pages: list[Page] = []
    pairs: set[str] = set()
    fragments = Fragments()  # rendered once per build, if a page needs them

    def md_pair(path: str, pair: Callable[..., tuple[str, str]]) -> Callable[[], dict[str, str]]:
        def render() -> dict[str, str]:
            html, md = pair(markdown=twins)
            return {path: html, _twin(path): md} if twins else {path: html}

        return render

    def one(path: str, page: Callable[[], str]) -> Callable[[], dict[str, str]]:
        return lambda: {path: page()}

    for t in panels:
        slug, others = t.card.slug, near[t.card.slug]
        pages.append(
            Page(
                f"tools/{slug}.html",
                text_digest("tool", own[slug], *[summary[o.card.slug] for o in others], salt),
                md_pair(
                    f"tools/{slug}.html",
                    partial(tool_page, t, today, tuple(others), site, fragments=fragments),
                ),
                0,
                _twin(f"tools/{slug}.html"),
            )
        )
        pages.append(
            Page(
                f"badges/{slug}.svg",
                text_digest("badge", summary[slug], salt),
                one(f"badges/{slug}.svg", partial(badge_svg, t)),
                0,
            )
        )
        pages.append(
            Page(
                f"embed/{slug}.html",
                text_digest("embed", summary[slug], str(t.votes.ship), str(t.votes.skip), salt),
                one(f"embed/{slug}.html", partial(embed_page, t, today, site)),
                0,
            )
        )
        for o in others:  # each pair's one page, whichever tool lists the other
            name = compare_name(slug, o.card.slug)
            if name in pairs:
                continue
            pairs.add(name)
            path = f"compare/{name}.html"
            first, second = sorted((t, o), key=lambda p: p.card.slug)
            extra = {
                "site_url": site,
                "canonical": f"{site.rstrip('/')}/{path}" if site else None,
                "fragments": fragments,
            }
            # HTML only: the Markdown twin of a comparison is `shipskip compare`'s, for a person.
            pages.append(
                Page(
                    path,
                    text_digest("compare", own[first.card.slug], own[second.card.slug], salt),
                    one(path, partial(compare_html, first, second, today, extra)),
                    0,
                )
            )

    for name, persona in prompts.personas.items():
        takes, cats = records[name]
        path = f"reviewers/{name}.html"
        extra = {"site_url": site, "canonical": f"{site.rstrip('/')}/{path}" if site else None}
        pages.append(
            Page(
                path,
                digest("reviewer", persona.model_dump(mode="json"), takes, cats, salt),
                md_pair(path, partial(reviewer_page, persona, takes, cats, today, extra)),
                0,
                _twin(path),
            )
        )

    weeks: dict[str, list[str]] = {}
    for r in rows["runs"]:
        in_week = weeks.setdefault(_iso_week(r["finished_at"]), [])
        if r["slug"] in by_slug and r["slug"] not in in_week:
            in_week.append(r["slug"])
    for week, slugs in weeks.items():
        listed = [by_slug[s] for s in slugs]
        path = f"digest/{week}.html"
        extra = {"site_url": site, "canonical": f"{site.rstrip('/')}/{path}" if site else None}
        pages.append(
            Page(
                path,
                digest("digest", [summary[s] for s in slugs], salt),
                md_pair(path, partial(digest_page, week, listed, today, extra)),
                0,
                _twin(path),
            )
        )
    archive = sorted(weeks, reverse=True)
    pages.append(
        Page(
            "digest/index.html",
            digest("digests", archive, salt),
            lambda: {"digest/index.html": digest_index_page(archive, today, site)},
            1,
        )
    )

    for category, tools in categories.items():
        path = f"categories/{category_slug(category)}.html"
        ranked = [(t, near[t.card.slug]) for t in tools]
        pages.append(
            Page(
                path,
                digest(
                    "category",
                    category,
                    [(summary[t.card.slug], [o.card.slug for o in o_]) for t, o_ in ranked],
                    salt,
                ),
                one(path, partial(category_page, category, ranked, today, site)),
                1,
            )
        )
    listing = sorted(categories, key=str.casefold)
    pages.append(
        Page(
            "categories/index.html",
            digest("categories", listing, salt),
            lambda: {"categories/index.html": categories_page(listing, today, site)},
            1,
        )
    )

    latest = sorted(panels, key=lambda t: (t.reviewed_at or datetime.min, t.card.slug), reverse=True)
    days: dict[date, list[ReviewedTool]] = {}
    for t in latest:
        days.setdefault((t.reviewed_at or datetime.min).date(), []).append(t)
    day_list = list(days.items())
    pages.append(
        Page(
            "index.html",
            digest("index", [summary[t.card.slug] for t in latest], salt),
            lambda: {"index.html": index_page(day_list, today, site)},
            2,
        )
    )
    feed = latest[:_FEED_ENTRIES]
    pages.append(
        Page(
            "feed.xml",
            digest("feed", [summary[t.card.slug] for t in feed], salt),
            lambda: {"feed.xml": atom_feed(feed, datetime.now(UTC).replace(tzinfo=None), site)},
            2,
        )
    )
    mapped = sorted(p.path for p in pages if p.path.endswith(".html") and not p.path.startswith("embed/"))
    pages.append(
        Page(
            "sitemap.xml",
            digest("sitemap", mapped, salt),
            lambda: {"sitemap.xml": sitemap_xml(mapped, site)},
            2,
        )
    )
    return pages


def build(store: Store, settings: Settings, today: date | None = None) -> SiteReport:
    """Bring the site under OUT_DIR up to date with the store (`shipskip site`, and the flows
    after a review or a rerun): only pages whose inputs changed are written."""
    out_dir = settings.out_dir
    key = str(out_dir.resolve())
    report = SiteReport()
    prompts = load_prompts(settings.prompts_dir)
    # The store is held only while its rows are read (one read connection): a read blocks
    # every writer of the file, and planning 10,000 tools is seconds of CPU.
    with store.reading():
        rows = store.site_rows()
        records = {name: store.reviewer_record(name) for name in prompts.personas}
        before = store.page_digests(key)
    pages = plan(rows, records, prompts, settings, today or datetime.now(UTC).date(), report.left_out)
    report.pages = len(pages)
    processes = settings.site_processes or cpus()
    written: dict[str, str] = {}
    present = files_in(out_dir, {p.path.rpartition("/")[0] for p in pages})
    for stage in sorted({p.stage for p in pages}):
        # A stage's files are written before the next stage's pages (which link to them) are.
        todo = []
        for page in (p for p in pages if p.stage == stage):
            if before.get(page.path) == page.digest and page.path in present:
                report.unchanged += 1
                continue
            todo.append(page)
            written[page.path] = page.digest
        report.written += render_and_write(out_dir, todo, processes)
        if not settings.site_markdown:
            report.removed += remove_files(out_dir, [p.twin for p in todo if p.twin in present])
    current = {p.path for p in pages}
    removed = [path for path in before if path not in current]
    for path in removed:  # after the index and categories stopped linking to them
        report.removed += remove_files(out_dir, [path, _twin(path)] if path.endswith(".html") else [path])
    store.record_pages(key, written, removed)
    return report
