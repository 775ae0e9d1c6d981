"""Pages from stored panels. Pure: values in, text out. Writing files is `publish`'s job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache, cached_property
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from .charts import TrendPoint, histogram, line_chart
from .models import CommunityVotes, EditorLabel, PanelVerdict, Take, ToolCard, is_web_address
from .panel import aggregate
from .quality import is_contested
from .roster import FALLBACK_COLOUR, colours, personas
from .settings import EMBEDDED_MODEL

# Every badge a page can put on a take or a tool, with its reason in words: shown as the
# badge's title and in the legend under the scorecard, so no badge goes unexplained.
BADGES: dict[str, tuple[str, str]] = {
    "flagged": (
        "flagged, not counted",
        "the score moved when text aimed at the panel was taken out of the card, so this take is "
        "shown but not counted in the verdict",
    ),
    "ungrounded": ("ungrounded", "the take names no fact from the tool's description"),
    "composed": (
        "composed from the checklist",
        "every take the model wrote stated something the card does not say, so this one is "
        "written from the persona's checklist answers; the verdict and score are the persona's own",
    ),
    "contested": (
        "contested",
        "the verdict could well come out otherwise: the chance it would flip, from how sure its "
        "counted personas are of their calls, is above the contested line, or one unstable persona "
        "could change it",
    ),
    "not_counted": (
        "not counted",
        "on the model that wrote it, this persona's lens has shown no signal on the labelled tools "
        "(out-of-fold kappa below the line), so its take is shown but not counted in the verdict",
    ),
}


def take_badges(take: Take) -> list[str]:
    """The badges a spoken take carries on pages and in `show` (keys of BADGES). A check that
    could not judge the take (grounded is None) gives no badge."""
    if take.abstained:
        return []
    return [
        kind
        for kind, on in (
            ("flagged", take.suspicious),
            ("ungrounded", take.grounded is False),
            ("composed", take.composed),
            ("not_counted", not take.counted and not take.suspicious),
        )
        if on
    ]


@dataclass(frozen=True)
class Update:
    """A persona's current take replaced an earlier one: when, why, and what it said before."""

    persona: str
    at: datetime
    rerun_reason: str | None
    was_score: int | None
    was_verdict: str | None
    was_take: str | None

    @property
    def was(self) -> str:
        return "no take" if self.was_score is None else f"was {self.was_score}, {self.was_verdict}"


@dataclass(frozen=True)
class ReviewedTool:
    """Everything a page shows about one tool."""

    card: ToolCard
    takes: tuple[Take, ...]
    votes: CommunityVotes
    reviewed_at: datetime | None
    updates: tuple[Update, ...] = ()
    # SHIPSKIP_CONTESTED_ABOVE: a verdict whose flip chance is above it reads "contested"
    # (None: the flip chance is shown nowhere as contested).
    contested_above: float | None = None
    labels: tuple[EditorLabel, ...] = ()  # editors' current calls, shown beside the takes
    # The panel's verdict where the caller worked it out already (a review flow's): not again.
    given_verdict: PanelVerdict | None = None

    def update(self, persona: str) -> Update | None:
        return next((u for u in self.updates if u.persona == persona), None)

    def labels_of(self, persona: str) -> list[EditorLabel]:
        return [lb for lb in self.labels if lb.persona == persona]

    @property
    def link(self) -> str | None:
        """The tool's own address, only when it is a web address (never javascript: or file:)."""
        url = self.card.url
        if not is_web_address(url):
            return None
        # Characters that could end the link early in Markdown or an attribute are encoded.
        return quote(url, safe=":/?#[]@!$&()*+,;=%-._~")

    @property
    def share(self) -> str:
        return f"{self.card.name} verdict: {self.verdict.line}"

    @cached_property
    def demo(self) -> bool:
        return any(EMBEDDED_MODEL in m for m in self.models)

    @cached_property  # computed once: a site build shows a tool on many pages
    def verdict(self) -> PanelVerdict:
        return self.given_verdict or aggregate(self.takes, self.contested_above)

    def take_of(self, persona: str) -> Take | None:
        return next((t for t in self.takes if t.persona == persona), None)

    @cached_property
    def models(self) -> list[str]:
        return sorted({t.model for t in self.takes if t.model})

    @cached_property
    def calibration_notes(self) -> list[str]:
        """The note "uncalibrated for MODEL" of each model whose takes here had no fitted calibration."""
        return sorted({n for t in self.takes if (n := t.calibration_note)})

    @cached_property
    def contested(self) -> bool:
        return self.verdict.contested or is_contested(self.takes)

    @property
    def flagged(self) -> bool:
        # The same takes as `verdict.flagged` and the panel_verdicts view: a flagged persona that
        # spoke. An abstention is never counted, so its flag leaves nothing out.
        return self.verdict.flagged > 0

    @cached_property
    def badges(self) -> list[str]:
        """The badges on this tool's takes and card, in BADGES order, each once."""
        shown = {kind for t in self.takes for kind in take_badges(t)}
        if self.contested:
            shown.add("contested")
        return [kind for kind in BADGES if kind in shown]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|])")


def md_escape(text: object) -> str:
    """Markdown viewers render inline HTML, so untrusted text is escaped there too."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("shipskip", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "html.j2", "svg.j2"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates ship inside the package: checking their files' times on every lookup
        # cost three stat calls a page (a big site build renders tens of thousands).
        auto_reload=False,
    )
    env.filters["md"] = md_escape
    env.filters["paras"] = lambda text: Markup("").join(
        Markup("<p>{}</p>").format(p.strip()) for p in str(text).split("\n\n") if p.strip()
    )
    env.globals["PERSONAS"] = personas()
    env.globals["BADGES"] = BADGES
    env.globals["take_badges"] = take_badges
    env.globals["badge_legend"] = lambda tools: [k for k in BADGES if any(k in t.badges for t in tools)]
    # Where a page sits in the site: pages live one folder down (tools/, compare/...), so links
    # to the index and categories climb one; the index passes "". No site URL: a local build.
    env.globals.update(root="../", canonical=None, site_url=None, page_notes=(), vote=None, fragments=None)
    env.filters["catslug"] = category_slug
    env.globals["compare_name"] = compare_name
    return env


def compare_name(a: str, b: str) -> str:
    """The one comparison page of two tools, whichever of them links to it: A-vs-B in slug order."""
    # Not sorted(): a site plan names a pair for every link on 75,000 pages.
    return f"{a}-vs-{b}" if a <= b else f"{b}-vs-{a}"


def category_slug(category: str) -> str:
    """A normalised category's page name: "Developer Tools" -> developer-tools."""
    return re.sub(r"[^a-z0-9]+", "-", category.casefold()).strip("-") or "other"


def render_template(template: str, **context: object) -> str:
    """One of the package's templates, rendered (autoescaped HTML, StrictUndefined)."""
    return _env().get_template(template).render(**context)


def page_meta(panels: list[ReviewedTool]) -> dict[str, object]:
    """What a page says about the panels it shows: its description and the model notes."""
    return {
        "description": "; ".join(p.share for p in panels)[:300],
        "demo": any(p.demo for p in panels),
        "page_notes": sorted({n for p in panels for n in p.calibration_notes}),
    }


def _compare_context(a: ReviewedTool, b: ReviewedTool, generated: date, extra: dict | None) -> dict:
    title = f"{a.card.name} vs {b.card.name}"
    return {"tools": [a, b], "generated": generated, "title": title, **page_meta([a, b]), **(extra or {})}


def compare_page(
    a: ReviewedTool, b: ReviewedTool, generated: date, extra: dict | None = None
) -> tuple[str, str]:
    ctx = _compare_context(a, b, generated, extra)
    return render_template("compare.html.j2", **ctx), render_template("compare.md.j2", **ctx)


_BADGE_COLOURS = {"Ship": "#12805c", "Skip": "#b3261e", "Mixed": "#8a6d00", "No verdict": "#5d6470"}


class Fragments:
    """A tool's card and each persona's scorecard cell, rendered once and reused on every page of
    one site build that shows them (a tool is on its own page and several comparisons). Only
    for pages one folder down with no reader's forms: the macros render with the globals."""

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str], Markup] = {}
        self._cards: dict[str, Markup] = {}

    @cached_property
    def _macros(self) -> object:
        # Made on first use: a publish that renders no tool page or comparison needs none.
        return _env().get_template("macros.html.j2").module

    def cell(self, t: ReviewedTool, persona: str) -> Markup:
        key = (t.card.slug, persona)
        if key not in self._cells:
            self._cells[key] = Markup(self._macros.take_cell(t, persona))  # type: ignore[attr-defined]
        return self._cells[key]

    @cached_property
    def _row_ends(self) -> dict[str, tuple[str, str]]:
        # Each persona's scorecard row as the macro makes it, cut where its cells go.
        ends = {}
        for persona in personas():
            row = str(self._macros.scorecard_row(persona, Markup("\x00")))  # type: ignore[attr-defined]
            head, tail = row.split("\x00")
            ends[persona] = (head, tail)
        return ends

    def rows(self, tools: list[ReviewedTool]) -> Markup:
        """The scorecard's rows: one call a page rather than a macro call a row and a cell. Joined
        as plain text and marked safe once (every part is markup already): Markup's own + and
        join escape each part again, which cost more than the rows themselves."""
        parts: list[str] = []
        for persona, (head, tail) in self._row_ends.items():
            parts.append(head)
            parts.extend(self.cell(t, persona) for t in tools)
            parts.append(tail)
        return Markup("".join(parts))

    def card(self, t: ReviewedTool) -> Markup:
        if t.card.slug not in self._cards:
            self._cards[t.card.slug] = Markup(self._macros.tool_card(t, True))  # type: ignore[attr-defined]
        return self._cards[t.card.slug]


def compare_html(a: ReviewedTool, b: ReviewedTool, generated: date, extra: dict | None = None) -> str:
    """The comparison page's HTML alone (a site build writes no Markdown twin)."""
    return render_template("compare.html.j2", **_compare_context(a, b, generated, extra))


def badge_svg(t: ReviewedTool) -> str:
    """A static verdict badge: the tool's name, Ship/Mixed/Skip and the panel's ship %."""
    v = t.verdict
    name = t.card.name if len(t.card.name) <= 28 else t.card.name[:27] + "…"
    contested = " · contested" if t.contested else ""
    right = f"{v.label} · {v.pct_text}{contested}"
    lw, rw = 12 + 7 * len(name), 12 + 7 * len(right)
    return render_template(
        "badge.svg.j2", name=name, right=right, lw=lw, rw=rw, colour=_BADGE_COLOURS[v.label],
        label=f"{t.card.name}: shipskip panel {v.label}, {v.pct_text} ship{contested.replace(' ·', ',')}",
    )  # fmt: skip


def tool_page(
    t: ReviewedTool,
    generated: date,
    similar: tuple[ReviewedTool, ...] = (),
    site_url: str | None = None,
    vote: dict | None = None,
    fragments: Fragments | None = None,
    markdown: bool = True,
) -> tuple[str, str]:
    """`vote`: the reader's forms when `shipskip web` serves the page (token, their vote, the
    Helpful counts); the static page has none. `markdown` False: the twin is "" (not rendered)."""
    import base64

    badge = badge_svg(t)
    # With a public address the snippet works on any site; without one it can only be relative.
    base = f"{site_url.rstrip('/')}/" if site_url else ""
    slug = t.card.slug
    ctx = {
        "tools": [t], "generated": generated, "title": t.card.name, **page_meta([t]), "similar": similar,
        "badge_data": "data:image/svg+xml;base64," + base64.b64encode(badge.encode()).decode(),
        "badge_snippet": f'<a href="{base}tools/{slug}.html"><img src="{base}badges/{slug}.svg" '
        f'alt="{t.share}"></a>',
        "embed_snippet": f'<iframe src="{base}embed/{slug}.html" title="{t.share}" width="360" '
        'height="220" style="border:0"></iframe>',
        "site_url": site_url, "canonical": f"{base}tools/{slug}.html" if site_url else None, "vote": vote,
        "fragments": None if vote else fragments,
    }  # fmt: skip
    return render_template("tool.html.j2", **ctx), render_template("tool.md.j2", **ctx) if markdown else ""


def reviewer_page(
    persona: object,
    takes: list[dict],
    categories: list[dict],
    generated: date,
    extra: dict | None = None,
    markdown: bool = True,
) -> tuple[str, str]:
    """A reviewer's page: its lens, what it rewards and what tires it, its recent verdicts and
    its ship rate per category. `persona` is the persona file as loaded (shipskip.personas).
    `markdown` False: the twin is "" (not rendered)."""
    title = f"The {persona.title}"  # type: ignore[attr-defined]
    ctx = {
        "p": persona, "takes": takes, "categories": categories, "generated": generated, "title": title,
        "description": f"{title} on the shipskip panel: {persona.role}",  # type: ignore[attr-defined]
        "demo": any(EMBEDDED_MODEL in str(t.get("model", "")) for t in takes),
        "page_notes": sorted({f"uncalibrated for {t['model']}" for t in takes if t.get("uncalibrated")}),
        **(extra or {}),
    }  # fmt: skip
    md = render_template("reviewer.md.j2", **ctx) if markdown else ""
    return render_template("reviewer.html.j2", **ctx), md


def digest_page(
    week: str,
    panels: list[ReviewedTool],
    generated: date,
    extra: dict | None = None,
    markdown: bool = True,
) -> tuple[str, str]:
    """The week's digest and, unless `markdown` is False (then ""), its Markdown twin."""
    ctx = {
        "week": week, "tools": panels, "generated": generated, "title": f"Weekly verdicts {week}",
        **page_meta(panels), "description": f"The panel's verdicts on {len(panels)} AI tools, week {week}",
        **(extra or {}),
    }  # fmt: skip
    md = render_template("digest.md.j2", **ctx) if markdown else ""
    return render_template("digest.html.j2", **ctx), md


def scorecard_markdown(panels: list[ReviewedTool]) -> str:
    return render_template("scorecard.md.j2", tools=panels)


def review_markdown(panel: ReviewedTool, what: str, rerun_reason: str | None = None) -> str:
    """A review or rerun as an orchestrator artifact: what was done, the verdict, the scorecard."""
    v = panel.verdict
    head = [f"# {md_escape(panel.card.name)}: {what}", "", f"**{v.line}** · {v.pct_text} panel ship"]
    if rerun_reason:
        head += ["", f"Reason: {md_escape(rerun_reason)}"]
    return "\n".join(head) + "\n\n" + scorecard_markdown([panel])


def trends_page(
    points: list[TrendPoint],
    summary: list[dict],
    filters: str,
    generated: date,
    distribution: dict[str, list[int]] | None = None,
    demo: bool = False,
    notes: tuple[str, ...] = (),
) -> str:
    scores: dict[str, list] = {}
    rates: dict[str, list] = {}
    for p in points:
        if p.mean_score is not None:
            scores.setdefault(p.persona, []).append((p.week, float(p.mean_score)))
        if p.ship_rate is not None:
            rates.setdefault(p.persona, []).append((p.week, float(p.ship_rate) * 100))
    # The current ISO week is still filling up: its figures are marked, not compared as equals.
    this_week = generated - timedelta(days=generated.weekday())
    weekly = [
        {"persona": p.persona, "week": p.week, "scored": p.scored, "partial": p.week >= this_week,
         "mean": None if p.mean_score is None else round(float(p.mean_score), 1),
         "ship": None if p.ship_rate is None else round(float(p.ship_rate) * 100)}
        for p in sorted(points, key=lambda p: (p.week, p.persona), reverse=True)
    ]  # fmt: skip
    histograms = [
        histogram(counts, f"{name.title()}: current scores", colours().get(name, FALLBACK_COLOUR))
        for name, counts in (distribution or {}).items()
    ]
    return render_template(
        "trends.html.j2",
        weekly=weekly,
        histograms=histograms,
        title="Score trends",
        description="The panel's scores and ship rate per persona and week",
        demo=demo,
        page_notes=notes,
        generated=generated,
        filters=filters,
        summary=summary,
        score_chart=line_chart(scores, 100, "Mean score per week"),
        rate_chart=line_chart(rates, 100, "Ship rate per week (%)"),
    )
