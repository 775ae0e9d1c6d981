"""Pages from stored panels. Pure: values in, text out. Writing files is `publish`'s job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from .analytics import TrendPoint, histogram, line_chart
from .embedded import EMBEDDED_MODEL
from .models import CommunityVotes, EditorLabel, PanelVerdict, Take, ToolCard, is_web_address
from .panel import aggregate
from .quality import is_contested
from .roster import COLOURS, FALLBACK_COLOUR, PERSONAS

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
        "written from the seat's checklist answers; the verdict and score are the seat's own",
    ),
    "contested": ("contested", "one unstable seat could change the verdict"),
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
        )
        if on
    ]


@dataclass(frozen=True)
class Update:
    """A seat's current take replaced an earlier one: when, why, and what it said before."""

    persona: str
    at: datetime
    reason: str | None
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
    labels: tuple[EditorLabel, ...] = ()  # editors' current calls, shown beside the takes

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

    @property
    def demo(self) -> bool:
        return any(EMBEDDED_MODEL in m for m in self.models)

    @property
    def verdict(self) -> PanelVerdict:
        return aggregate(self.takes)

    def take_of(self, persona: str) -> Take | None:
        return next((t for t in self.takes if t.persona == persona), None)

    @property
    def models(self) -> list[str]:
        return sorted({t.model for t in self.takes if t.model})

    @property
    def calibration_notes(self) -> list[str]:
        """The note "uncalibrated for MODEL" of each model whose takes here had no fitted calibration."""
        return sorted({n for t in self.takes if (n := t.calibration_note)})

    @property
    def contested(self) -> bool:
        return is_contested(self.takes)

    @property
    def flagged(self) -> bool:
        # The same takes as `verdict.flagged` and the panel_verdicts view: a flagged seat that
        # spoke. An abstention is never counted, so its flag leaves nothing out.
        return self.verdict.flagged > 0

    @property
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
    )
    env.filters["md"] = md_escape
    env.filters["paras"] = lambda text: Markup("").join(
        Markup("<p>{}</p>").format(p.strip()) for p in str(text).split("\n\n") if p.strip()
    )
    env.globals["PERSONAS"] = PERSONAS
    env.globals["BADGES"] = BADGES
    env.globals["take_badges"] = take_badges
    env.globals["badge_legend"] = lambda tools: [k for k in BADGES if any(k in t.badges for t in tools)]
    return env


def _render(template: str, **context: object) -> str:
    return _env().get_template(template).render(**context)


def _meta(panels: list[ReviewedTool]) -> dict[str, object]:
    return {
        "description": "; ".join(p.share for p in panels)[:300],
        "demo": any(p.demo for p in panels),
    }


def compare_page(a: ReviewedTool, b: ReviewedTool, generated: date) -> tuple[str, str]:
    title = f"{a.card.name} vs {b.card.name}"
    ctx = {"tools": [a, b], "generated": generated, "title": title, **_meta([a, b])}
    return _render("compare.html.j2", **ctx), _render("compare.md.j2", **ctx)


_BADGE_COLOURS = {"Ship": "#12805c", "Skip": "#b3261e", "Mixed": "#8a6d00", "No verdict": "#5d6470"}


def badge_svg(t: ReviewedTool) -> str:
    """A static verdict badge: the tool's name, Ship/Mixed/Skip and the panel's ship %."""
    v = t.verdict
    name = t.card.name if len(t.card.name) <= 28 else t.card.name[:27] + "…"
    right = f"{v.label} · {v.pct_text}"
    lw, rw = 12 + 7 * len(name), 12 + 7 * len(right)
    return _render(
        "badge.svg.j2", name=name, right=right, lw=lw, rw=rw, colour=_BADGE_COLOURS[v.label],
        label=f"{t.card.name}: shipskip panel {v.label}, {v.pct_text} ship",
    )  # fmt: skip


def tool_page(t: ReviewedTool, generated: date, similar: tuple[ReviewedTool, ...] = ()) -> tuple[str, str]:
    import base64

    badge = badge_svg(t)
    ctx = {
        "tools": [t], "generated": generated, "title": t.card.name, **_meta([t]), "similar": similar,
        "badge_data": "data:image/svg+xml;base64," + base64.b64encode(badge.encode()).decode(),
        "badge_snippet": f'<a href="tools/{t.card.slug}.html"><img src="badges/{t.card.slug}.svg" '
        f'alt="{t.share}"></a>',
    }  # fmt: skip
    return _render("tool.html.j2", **ctx), _render("tool.md.j2", **ctx)


def reviewer_page(
    persona: object, takes: list[dict], categories: list[dict], generated: date
) -> tuple[str, str]:
    """A reviewer's page: its lens, what it rewards and what tires it, its recent verdicts and
    its ship rate per category. `persona` is the persona file as loaded (shipskip.personas)."""
    title = f"The {persona.title}"  # type: ignore[attr-defined]
    ctx = {
        "p": persona, "takes": takes, "categories": categories, "generated": generated, "title": title,
        "description": f"{title} on the shipskip panel: {persona.role}",  # type: ignore[attr-defined]
        "demo": any(EMBEDDED_MODEL in str(t.get("model", "")) for t in takes),
    }  # fmt: skip
    return _render("reviewer.html.j2", **ctx), _render("reviewer.md.j2", **ctx)


def digest_page(week: str, panels: list[ReviewedTool], generated: date) -> tuple[str, str]:
    ctx = {
        "week": week, "tools": panels, "generated": generated, "title": f"Weekly verdicts {week}",
        **_meta(panels), "description": f"The panel's verdicts on {len(panels)} AI tools, week {week}",
    }  # fmt: skip
    return _render("digest.html.j2", **ctx), _render("digest.md.j2", **ctx)


def scorecard_markdown(panels: list[ReviewedTool]) -> str:
    return _render("scorecard.md.j2", tools=panels)


def review_markdown(panel: ReviewedTool, what: str, reason: str | None = None) -> str:
    """A review or rerun as an orchestrator artifact: what was done, the verdict, the scorecard."""
    v = panel.verdict
    head = [f"# {md_escape(panel.card.name)}: {what}", "", f"**{v.line}** · {v.pct_text} panel ship"]
    if reason:
        head += ["", f"Reason: {md_escape(reason)}"]
    return "\n".join(head) + "\n\n" + scorecard_markdown([panel])


def trends_page(
    points: list[TrendPoint],
    summary: list[dict],
    filters: str,
    generated: date,
    distribution: dict[str, list[int]] | None = None,
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
        histogram(counts, f"{name.title()}: current scores", COLOURS.get(name, FALLBACK_COLOUR))
        for name, counts in (distribution or {}).items()
    ]
    return _render(
        "trends.html.j2",
        weekly=weekly,
        histograms=histograms,
        title="Score trends",
        description="The panel's scores and ship rate per persona and week",
        demo=False,
        generated=generated,
        filters=filters,
        summary=summary,
        score_chart=line_chart(scores, 100, "Mean score per week"),
        rate_chart=line_chart(rates, 100, "Ship rate per week (%)"),
    )
