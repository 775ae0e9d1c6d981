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
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import StoredRowError
from .models import CommunityVotes
from .render import (
    Fragments,
    ReviewedTool,
    Update,
    atom_feed,
    badge_svg,
    categories_page,
    category_page,
    category_slug,
    compare_html,
    compare_name,
    digest_index_page,
    digest_page,
    embed_page,
    index_page,
    reviewer_page,
    sitemap_xml,
    tool_page,
)
from .settings import Settings
from .store import Store
from .writes import write_tree

# Feed entries: the latest verdicts only, as feed readers expect.
_FEED_ENTRIES = 50
# Rendered files held in memory before they are written (bounds a big build's memory).
_WRITE_BATCH = 2000
# Fewer pages than this to write are rendered in this process whatever SITE_PROCESSES says:
# starting processes costs more than it saves (a review's publish writes a few dozen).
_FORK_FROM = 2000


@dataclass(frozen=True)
class _Page:
    """One page of the site: `path` (relative to OUT_DIR) names it in `page_digests`; `render`
    gives every file it consists of (an HTML page and its Markdown twin, say)."""

    path: str
    digest: str
    render: Callable[[], dict[str, str]]
    stage: int  # 0: pages nothing else depends on; 1: category pages; 2: index, feed, sitemap
    # The Markdown twin this page has when SITE_MARKDOWN is on; with it off, a twin left by an
    # earlier build is deleted when the page is written, so none goes stale.
    twin: str = ""


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


def _hash(*parts: object) -> str:
    # pickle, not repr or JSON: a third of repr's time for the same rows (and repr a third of
    # JSON's). The values come from the store in column order, so the same inputs give the same
    # bytes. Fast mode keeps no memo, so two equal values are written alike whether or not they
    # are one object (with a memo, a shared string would be written as a back-reference). A new
    # Python that pickled them otherwise would rewrite every page once, never leave one stale.
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, 5)
    pickler.fast = True  # type: ignore[attr-defined]
    pickler.dump(parts)
    return hashlib.sha256(buf.getbuffer()).hexdigest()[:32]


def _text_hash(*parts: str) -> str:
    """`_hash` for parts that are short texts already (digests, names): the pages made for every
    tool (75,000 for 10,000 tools) are digested from their tools' digests this way."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _templates_digest() -> str:
    """Changed templates or a new shipskip version rebuild every page."""
    h = hashlib.sha256(__version__.encode())
    for entry in sorted(resources.files("shipskip.templates").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".j2"):
            h.update(entry.name.encode() + entry.read_bytes())
    return h.hexdigest()[:16]


def load_panels(
    store: Store,
    rows: dict[str, list[dict]],
    left_out: list[str],
    digests: dict[str, str] | None = None,
    contested_above: float | None = None,
) -> list[ReviewedTool]:
    """Every reviewed tool as its pages show it, from the bulk reads of `Store.site_rows`. A
    tool whose stored card or take fails validation is left out (and said in `left_out`),
    never its neighbours. `digests` gets each tool's digest of the stored rows its own page
    shows (hashing the rows as read is a tenth of the cost of hashing the models)."""
    takes: dict[str, list] = {}
    for row in rows["takes"]:
        takes.setdefault(row["slug"], []).append(row)
    label_rows: dict[str, list[dict]] = {}
    for row in rows.get("labels", []):
        label_rows.setdefault(row["slug"], []).append(row)
    votes = {r["slug"]: CommunityVotes(ship=r["ship"], skip=r["skip"]) for r in rows["votes"]}
    reviewed = {r["slug"]: r["at"] for r in rows["reviewed"]}
    pairs: dict[tuple[str, str], list[dict]] = {}
    for r in rows["updates"]:
        pairs.setdefault((r["slug"], r["persona"]), []).append(r)
    updates: dict[str, list[Update]] = {}
    update_rows: dict[str, list] = {}
    for (slug, persona), (now, before, *_) in pairs.items():
        update_rows.setdefault(slug, []).append((now, before))
        updates.setdefault(slug, []).append(
            Update(
                persona,
                now["created_at"],
                now["reason"],
                before["score"],
                before["verdict"],
                before["take"] or before["abstain_reason"],
            )
        )
    from pydantic import ValidationError

    from .errors import describe_validation_error
    from .models import EditorLabel, ToolCard, is_web_address
    from .roster import persona_key

    out = []
    for row in rows["tools"]:
        slug = row["slug"]
        if row["url"] and not is_web_address(row["url"]):
            row["url"] = ""
        try:
            card = ToolCard.model_validate(row)
            panel = tuple(
                sorted(
                    (store.take_from_row(t, slug) for t in takes.get(slug, [])),
                    key=lambda t: persona_key(t.persona),
                )
            )
        except ValidationError as exc:
            left_out.append(str(StoredRowError("tools", slug, *describe_validation_error(exc))))
            continue
        except StoredRowError as exc:
            left_out.append(str(exc))
            continue
        if digests is not None:
            digests[slug] = _hash(
                row,
                takes.get(slug),
                votes.get(slug),
                reviewed.get(slug),
                update_rows.get(slug),
                label_rows.get(slug),
                contested_above,
            )
        out.append(
            ReviewedTool(
                card,
                panel,
                votes.get(slug, CommunityVotes()),
                reviewed.get(slug),
                tuple(updates.get(slug, ())),
                contested_above=contested_above,
                labels=tuple(EditorLabel.model_validate(r) for r in label_rows.get(slug, ())),
            )
        )
    return out


def _twin(path: str) -> str:
    return path.removesuffix(".html") + ".md"


def _summary(t: ReviewedTool) -> tuple[object, ...]:
    """What a listing shows of a tool (name, verdict, badge...), for the digests of the pages
    that list it: a vote on it changes its own pages, not every listing it is in."""
    v = t.verdict
    return (
        t.card.slug,
        t.card.name,
        t.card.category,
        t.card.tagline,
        v.line,
        v.pct_text,
        t.demo,
        t.calibration_notes,
        t.reviewed_at,
        t.contested,
    )


def nearest(ranked: list[ReviewedTool], n: int) -> dict[str, list[ReviewedTool]]:
    """Each tool's `n` nearest tools of the same category by panel ship % (ties: the more
    recently reviewed first, then by slug). `ranked` is one category's tools, sorted by ship %."""
    out: dict[str, list[ReviewedTool]] = {}
    if n <= 0:
        return {t.card.slug: [] for t in ranked}
    for i, t in enumerate(ranked):
        window = ranked[max(0, i - n) : i] + ranked[i + 1 : i + 1 + n]  # the nearest lie in here
        mine = t.verdict.ship_pct or 0
        window.sort(
            key=lambda o: (
                abs((o.verdict.ship_pct or 0) - mine),
                -(o.reviewed_at.timestamp() if o.reviewed_at else 0),
                o.card.slug,
            )
        )
        out[t.card.slug] = window[:n]
    return out


def _ship_order(t: ReviewedTool) -> tuple[int, str]:
    return (-(t.verdict.ship_pct if t.verdict.ship_pct is not None else -1), t.card.slug)


def _iso_week(at: datetime) -> str:
    y, w, _ = at.isocalendar()
    return f"{y}-W{w:02d}"


def plan(store: Store, settings: Settings, today: date, left_out: list[str]) -> list[_Page]:
    """Every page of the site, with its digest; nothing is rendered yet."""
    with store.reading():  # one read connection for the whole plan
        return _plan(store, settings, today, left_out)


def _plan(store: Store, settings: Settings, today: date, left_out: list[str]) -> list[_Page]:
    from .personas import load_prompts

    site = settings.site_url
    twins = settings.site_markdown
    salt = _hash(_templates_digest(), site, twins)
    rows = store.site_rows()
    own: dict[str, str] = {}
    panels = load_panels(store, rows, left_out, own, settings.contested_above)
    by_slug = {t.card.slug: t for t in panels}
    # Each tool's listing summary, digested once: the pages that list a tool hash these short
    # strings, not the summaries again (a tool is listed on a dozen pages).
    summary = {t.card.slug: _hash(_summary(t)) for t in panels}
    categories: dict[str, list[ReviewedTool]] = {}
    for t in panels:
        categories.setdefault(t.card.category, []).append(t)
    near: dict[str, list[ReviewedTool]] = {}
    for tools in categories.values():
        tools.sort(key=_ship_order)
        near.update(nearest(tools, settings.compare_neighbours))

    pages: list[_Page] = []
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
            _Page(
                f"tools/{slug}.html",
                _text_hash("tool", own[slug], *[summary[o.card.slug] for o in others], salt),
                md_pair(
                    f"tools/{slug}.html",
                    partial(tool_page, t, today, tuple(others), site, fragments=fragments),
                ),
                0,
                _twin(f"tools/{slug}.html"),
            )
        )
        pages.append(
            _Page(
                f"badges/{slug}.svg",
                _text_hash("badge", summary[slug], salt),
                one(f"badges/{slug}.svg", partial(badge_svg, t)),
                0,
            )
        )
        pages.append(
            _Page(
                f"embed/{slug}.html",
                _text_hash("embed", summary[slug], str(t.votes.ship), str(t.votes.skip), salt),
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
                _Page(
                    path,
                    _text_hash("compare", own[first.card.slug], own[second.card.slug], salt),
                    one(path, partial(compare_html, first, second, today, extra)),
                    0,
                )
            )

    prompts = load_prompts(settings.prompts_dir)
    for name, persona in prompts.personas.items():
        takes, cats = store.reviewer_record(name)
        path = f"reviewers/{name}.html"
        extra = {"site_url": site, "canonical": f"{site.rstrip('/')}/{path}" if site else None}
        pages.append(
            _Page(
                path,
                _hash("reviewer", persona.model_dump(mode="json"), takes, cats, salt),
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
            _Page(
                path,
                _hash("digest", [summary[s] for s in slugs], salt),
                md_pair(path, partial(digest_page, week, listed, today, extra)),
                0,
                _twin(path),
            )
        )
    archive = sorted(((w, len(s)) for w, s in weeks.items()), reverse=True)
    pages.append(
        _Page(
            "digest/index.html",
            _hash("digests", archive, salt),
            lambda: {"digest/index.html": digest_index_page(archive, today, site)},
            1,
        )
    )

    for category, tools in categories.items():
        path = f"categories/{category_slug(category)}.html"
        ranked = [(t, near[t.card.slug]) for t in tools]
        pages.append(
            _Page(
                path,
                _hash(
                    "category",
                    category,
                    [(summary[t.card.slug], [o.card.slug for o in o_]) for t, o_ in ranked],
                    salt,
                ),
                one(path, partial(category_page, category, ranked, today, site)),
                1,
            )
        )
    listing = sorted(((c, len(ts)) for c, ts in categories.items()), key=lambda x: x[0].casefold())
    pages.append(
        _Page(
            "categories/index.html",
            _hash("categories", listing, salt),
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
        _Page(
            "index.html",
            _hash("index", [summary[t.card.slug] for t in latest], salt),
            lambda: {"index.html": index_page(day_list, today, site)},
            2,
        )
    )
    feed = latest[:_FEED_ENTRIES]
    pages.append(
        _Page(
            "feed.xml",
            _hash("feed", [summary[t.card.slug] for t in feed], salt),
            lambda: {"feed.xml": atom_feed(feed, datetime.now(UTC).replace(tzinfo=None), site)},
            2,
        )
    )
    mapped = sorted(p.path for p in pages if p.path.endswith(".html") and not p.path.startswith("embed/"))
    pages.append(
        _Page(
            "sitemap.xml",
            _hash("sitemap", mapped, salt),
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
    with store.reading():  # one read connection for the plan and the digests stored
        pages = _plan(store, settings, today or datetime.now(UTC).date(), report.left_out)
        before = store.page_digests(key)
    report.pages = len(pages)
    processes = settings.site_processes or _cpus()
    written: dict[str, str] = {}
    present = _files_in(out_dir, {p.path.rpartition("/")[0] for p in pages})
    for stage in sorted({p.stage for p in pages}):
        # A stage's files are written before the next stage's pages (which link to them) are.
        todo = []
        for page in (p for p in pages if p.stage == stage):
            if before.get(page.path) == page.digest and page.path in present:
                report.unchanged += 1
                continue
            todo.append(page)
            written[page.path] = page.digest
        report.written += _render_and_write(out_dir, todo, processes)
        if not settings.site_markdown:
            _drop_twins(out_dir, [p.twin for p in todo if p.twin in present], report)
    current = {p.path for p in pages}
    removed = [path for path in before if path not in current]
    for path in removed:  # after the index and categories stopped linking to them
        for rel in (path, path.removesuffix(".html") + ".md") if path.endswith(".html") else (path,):
            target = out_dir / rel
            if target.is_file() and not target.is_symlink():
                target.unlink()
                report.removed.append(rel)
    store.record_pages(key, written, removed)
    return report


def _cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _drop_twins(out_dir: Path, twins: list[str], report: SiteReport) -> None:
    """The Markdown twins an earlier build wrote beside pages now written without them."""
    for rel in twins:
        target = out_dir / rel
        if target.is_file() and not target.is_symlink():
            target.unlink()
            report.removed.append(rel)


def _files_in(out_dir: Path, folders: set[str]) -> set[str]:
    """The files (or links to files, as Path.is_file sees them) in each of `folders` under
    `out_dir`, as paths relative to it: one listing a folder rather than a stat a page."""
    found: set[str] = set()
    for folder in folders:
        try:
            with os.scandir(out_dir / folder) as entries:
                found.update(f"{folder}/{e.name}" if folder else e.name for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


# The pages a forked renderer works on: set before the fork, so nothing is pickled but indexes.
_FORKED: list[_Page] = []


def _render_range(out_dir: Path, start: int, stop: int) -> list[str]:
    out: list[str] = []
    files: dict[str, str] = {}
    for page in _FORKED[start:stop]:
        for rel, text in page.render().items():
            files[rel] = text
            out.append(rel)
        if len(files) >= _WRITE_BATCH:
            write_tree(out_dir, files)
            files = {}
    write_tree(out_dir, files)
    return out


def _render_and_write(out_dir: Path, todo: list[_Page], processes: int) -> list[str]:
    """Render and write `todo`, in this process or, for a big build with SHIPSKIP_SITE_PROCESSES
    above 1, in that many forked ones (rendering is most of a full build's time, and Jinja holds
    the GIL). Returns the files written."""
    global _FORKED
    import multiprocessing

    # A daemonic process (a pool's worker) may not start processes of its own.
    if processes <= 1 or len(todo) < _FORK_FROM or multiprocessing.current_process().daemon:
        _FORKED = todo
        try:
            return _render_range(out_dir, 0, len(todo))
        finally:
            _FORKED = []
    step = -(-len(todo) // (processes * 4))  # a few chunks a process, so none waits on the last
    _FORKED = todo
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.starmap(_render_range, [(out_dir, i, i + step) for i in range(0, len(todo), step)])
    finally:
        _FORKED = []
    return [rel for part in parts for rel in part]
