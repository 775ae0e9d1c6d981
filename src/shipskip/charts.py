"""The site's SVG charts. Pure: numbers in, a self-contained SVG string out, with no store,
query or file behind them, so `render` can draw them while staying pure itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from .roster import FALLBACK_COLOUR, colours, persona_key


@dataclass(frozen=True)
class TrendPoint:
    persona: str
    week: date
    scored: int
    mean_score: float | None
    ship_rate: float | None
    # Takes that spoke but did not count in their panels (no signal on their model).
    not_counted: int = 0


def histogram(counts: list[int], title: str, colour: str) -> Markup:
    """A small self-contained SVG bar chart of scores in ten buckets, labelled 0 to 90."""
    w, h, left, bottom, top = 300, 150, 28, 22, 34  # room above the tallest bar for its count
    peak = max(counts) or 1
    bar = (w - left - 8) / len(counts)
    parts = [
        f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg" style="max-width:100%;height:auto">',
        f'<text x="{left}" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
    ]
    for i, n in enumerate(counts):
        bh = (h - top - bottom) * n / peak
        x, mid, top_y = left + i * bar, left + i * bar + bar / 2, h - bottom - bh
        high = i * 10 + 9 if i < 9 else 100
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top_y:.1f}" width="{bar - 2:.1f}" height="{bh:.1f}" '
            f'fill="{colour}"><title>{i * 10}-{high}: {n}</title></rect>'
        )
        parts.append(f'<text x="{mid:.1f}" y="{h - 6}" font-size="10" text-anchor="middle">{i * 10}</text>')
        if n:
            label = f'<text x="{mid:.1f}" y="{top_y - 3:.1f}" font-size="9" text-anchor="middle">'
            parts.append(f"{label}{n}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    series: dict[str, list[tuple[date, float]]], y_max: float, title: str, fmt: str = "{:.0f}"
) -> Markup:
    """A small self-contained SVG line chart, one line per persona in persona order.

    Drawn for a phone first (compared in Chromium against pygal 3.1.3 on the same data): a
    narrow canvas so text stays legible when scaled to 390 px, a gridline every quarter, a
    date under every week (every second or third when there are many), the legend below."""
    names = sorted(series, key=persona_key)
    legend_rows = -(-len(names) // 3)
    w, left, right, top, plot_h = 480, 34, 12, 26, 170
    h = top + plot_h + 34 + 18 * legend_rows
    weeks = sorted({d for pts in series.values() for d, _ in pts})
    if not weeks:
        return Markup('<p class="empty">No scored takes in this range yet.</p>')
    span = max((weeks[-1] - weeks[0]).days, 1)

    def x(d: date) -> float:
        return left + (w - left - right) * ((d - weeks[0]).days / span if len(weeks) > 1 else 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    parts = [
        f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg" style="max-width:100%;height:auto">',
        f'<text x="{left}" y="15" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        yy = y(y_max * frac)
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e3e3"/>')
        parts.append(
            f'<text x="{left - 5}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(fmt.format(y_max * frac))}</text>"
        )
    step = max(1, -(-len(weeks) // 8))  # at most 8 dates, so they never overlap
    for d in weeks[::step]:
        parts.append(
            f'<text x="{x(d):.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">'
            f"{d.strftime('%b %d')}</text>"
        )
    for i, name in enumerate(names):
        colour = colours().get(name, FALLBACK_COLOUR)
        pts = sorted(series[name])
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for d, v in pts:
            parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        lx, ly = left + (i % 3) * 150, top + plot_h + 38 + 18 * (i // 3)
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly}" font-size="12">{escape(name.title())}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
