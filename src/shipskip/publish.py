"""Load panels from the store and write pages under the output folder."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .analytics import score_distribution, trend_points, trend_summary
from .errors import ShipskipError, StoredRowError
from .models import SLUG_RE
from .render import (
    ReviewedTool,
    Update,
    badge_svg,
    compare_name,
    compare_page,
    digest_page,
    reviewer_page,
    tool_page,
    trends_page,
)
from .settings import EMBEDDED_MODEL, get_settings
from .store import Store
from .writes import write_text

WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


def load_panel(store: Store, slug: str) -> ReviewedTool:
    with store.reading():
        card = store.tool(slug)
        if card is None:
            raise ShipskipError(f"no reviewed tool with slug '{slug}'")
        return ReviewedTool(
            card=card,
            takes=tuple(store.current_takes(slug)),
            votes=store.votes(slug),
            reviewed_at=store.reviewed_at(slug),
            updates=tuple(_updates(store, slug)),
            contested_above=get_settings().contested_above,
            labels=tuple(store.labels(slug)),
        )


def _panels(store: Store, slugs: list[str], left_out: list[str] | None) -> list[ReviewedTool]:
    """The panels of several tools for a listing; a tool whose stored row no longer validates is
    left out (and said in `left_out`), so it never takes its neighbours' pages down with it."""
    out = []
    for slug in slugs:
        try:
            out.append(load_panel(store, slug))
        except StoredRowError as exc:
            if left_out is not None:
                left_out.append(str(exc))
    return out


def _updates(store: Store, slug: str) -> list[Update]:
    """For each persona whose current take is not its first, the change and the take it replaced."""
    by_persona: dict[str, list[dict]] = {}
    for row in store.history(slug):
        if row["status"] == "complete":
            by_persona.setdefault(row["persona"], []).append(row)
    out = []
    for persona, rows in by_persona.items():
        if len(rows) < 2:
            continue
        now, before = rows[-1], rows[-2]
        out.append(Update(persona, now["created_at"], now["reason"], before["score"], before["verdict"],
                          before["take"] or before["abstain_reason"]))  # fmt: skip
    return out


def week_bounds(week: str) -> tuple[date, date]:
    m = WEEK_RE.match(week)
    if not m:
        raise ShipskipError(f"week '{week}' must look like 2026-W48")
    try:
        start = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError as exc:
        raise ShipskipError(f"week '{week}': {exc}") from None
    return start, start + timedelta(days=7)


def current_week() -> str:
    y, w, _ = datetime.now(UTC).date().isocalendar()
    return f"{y}-W{w:02d}"


def _target(out_dir: Path, sub: str, stem: str) -> Path:
    # Names come from validated slugs, but check anyway; `writes` keeps the file inside out_dir.
    if not re.fullmatch(r"[a-z0-9-]+|\d{4}-W\d{2}", stem):
        raise ShipskipError(f"refusing to write a page named '{stem}'")
    return out_dir / sub / stem


def _write(out_dir: Path, path: Path, html: str, md: str, written: list[Path] | None = None) -> Path:
    html_path = path.with_suffix(".html")
    write_text(out_dir, html_path, html)
    write_text(out_dir, path.with_suffix(".md"), md)
    if written is not None:
        written += [html_path, path.with_suffix(".md")]
    return html_path


def write_compare(
    store: Store, out_dir: Path, a: str, b: str, written: list[Path] | None = None
) -> tuple[Path, list[ReviewedTool]]:
    """The comparison page, and the tool pages it links to; `written` collects every file."""
    for s in (a, b):
        if not SLUG_RE.fullmatch(s):
            raise ShipskipError(f"'{s}' is not a tool slug")
    if a == b:
        raise ShipskipError("compare needs two different tools")
    # One page per pair, as the site names and lays it out, whichever order it was asked in.
    a, b = sorted((a, b))
    panels = [load_panel(store, a), load_panel(store, b)]
    html, md = compare_page(panels[0], panels[1], datetime.now(UTC).date())
    for panel in panels:  # the pages a comparison links to
        _write_tool_page(store, out_dir, panel, written=written)
    return _write(out_dir, _target(out_dir, "compare", compare_name(a, b)), html, md, written), panels


def _write_tool_page(
    store: Store,
    out_dir: Path,
    panel: ReviewedTool,
    left_out: list[str] | None = None,
    written: list[Path] | None = None,
) -> Path:
    """A tool's page, its badge, and the comparisons its "similar tools" block links to."""
    today = datetime.now(UTC).date()
    similar = tuple(_panels(store, store.similar(panel.card.slug, panel.card.category), left_out))
    for other in similar:  # each pair's one page, in slug order (render.compare_name)
        first, second = sorted((panel, other), key=lambda p: p.card.slug)
        html, md = compare_page(first, second, today)
        name = compare_name(panel.card.slug, other.card.slug)
        _write(out_dir, _target(out_dir, "compare", name), html, md, written)
    badge = _target(out_dir, "badges", panel.card.slug).with_suffix(".svg")
    write_text(out_dir, badge, badge_svg(panel))
    if written is not None:
        written.append(badge)
    html, md = tool_page(panel, today, similar)
    return _write(out_dir, _target(out_dir, "tools", panel.card.slug), html, md, written)


def write_tool(
    store: Store, out_dir: Path, slug: str, left_out: list[str] | None = None
) -> tuple[Path, list[ReviewedTool]]:
    """`left_out` collects the similar tools left off the page because their stored rows fail."""
    if not SLUG_RE.fullmatch(slug):
        raise ShipskipError(f"'{slug}' is not a tool slug")
    panel = load_panel(store, slug)
    return _write_tool_page(store, out_dir, panel, left_out), [panel]


def write_reviewer(store: Store, out_dir: Path, prompts_dir: Path, persona: str) -> Path:
    from .personas import load_prompts

    prompts = load_prompts(prompts_dir)
    if persona not in prompts.personas:
        raise ShipskipError(f"persona: '{persona}' is not one of {', '.join(prompts.personas)}")
    takes, categories = store.reviewer_record(persona) if store.exists() else ([], [])
    html, md = reviewer_page(prompts.personas[persona], takes, categories, datetime.now(UTC).date())
    return _write(out_dir, _target(out_dir, "reviewers", persona), html, md)


def write_digest(
    store: Store, out_dir: Path, week: str, left_out: list[str] | None = None
) -> tuple[Path, list[ReviewedTool]]:
    """`left_out` collects the tools left out because their stored rows fail validation."""
    start, end = week_bounds(week)
    # Only the digest itself: the tool pages it links to are `page`'s and `site`'s to write.
    panels = _panels(store, store.completed_between(start, end), left_out)
    html, md = digest_page(week, panels, datetime.now(UTC).date())
    return _write(out_dir, _target(out_dir, "digest", week), html, md), panels


def compare_both_orders(store: Store, a: str, b: str) -> tuple[str, str]:
    """The comparison page rendered A-vs-B and B-vs-A: that its rendering is order-free is
    checked on the pages themselves (tests); `compare` checks the panels it renders."""
    pa, pb = load_panel(store, a), load_panel(store, b)
    today = datetime.now(UTC).date()
    return compare_page(pa, pb, today)[1], compare_page(pb, pa, today)[1]


def verdicts_shown(panels: list[ReviewedTool]) -> dict[str, str]:
    """Tool name to the panel verdict a comparison of `panels`, in that order, shows: read off
    the panels the page is rendered from, not off the page."""
    return {p.card.name: p.verdict.line for p in panels}


def verdicts_by_tool(markdown: str) -> dict[str, str]:
    """Tool name to panel-verdict cell, read back off a rendered comparison (Markdown)."""
    lines = markdown.splitlines()
    # The decision table's header row: an empty first cell, then the two tool names.
    header = next(ln for ln in lines if ln.startswith("| | "))
    names = [c.strip() for c in header.strip("|").split("|")][1:]
    row = next(ln for ln in lines if ln.startswith("| Panel verdict |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    return dict(zip(names, cells, strict=True))


def tool_neighbours(store: Store, panel: ReviewedTool) -> tuple[ReviewedTool, ...]:
    """The similar tools a tool page lists (same category, as `page` writes it)."""
    return tuple(_panels(store, store.similar(panel.card.slug, panel.card.category), None))


def write_trends(
    store: Store,
    root: Path,
    target: Path,
    persona: str | None = None,
    category: str | None = None,
    since: date | None = None,
    all_versions: bool = False,
) -> list[dict[str, Any]]:
    """The trends page (inline SVG charts, takes per week) at `target`, kept under `root`;
    returns its summary per persona. Counts each tool's current take per persona, in the week it
    was made; `all_versions` counts every version instead."""
    store.init()
    with store.analysing():
        points = trend_points(store, persona, category, since, all_versions)
        distribution = score_distribution(store, persona)
        models = store.current_models()
    summary = trend_summary(points)
    filters = ", ".join(
        f"{k}: {v}"
        for k, v in (("persona", persona), ("category", category), ("since", since and since.isoformat()))
        if v
    )
    counted = (
        "Every take version, reruns included, in the week each was made."
        if all_versions
        else "Current takes (each tool's latest take per persona), in the week each was made."
    )
    page = trends_page(
        points,
        summary,
        f"{counted} {f'Only {filters}.' if filters else 'All personas, categories and dates.'}",
        datetime.now(UTC).date(),
        distribution,
        # The same notes as the other pages: the demo model's, and each uncalibrated model's.
        demo=any(EMBEDDED_MODEL in m["model"] for m in models),
        notes=tuple(sorted(f"uncalibrated for {m['model']}" for m in models if m["uncalibrated"])),
    )
    write_text(root, target, page)
    return summary
