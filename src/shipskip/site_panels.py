"""Every reviewed tool as the site's pages show it, made from the store's bulk reads
(`Store.site_rows`), and the digests of what a page shows. No I/O: `site.build` reads the rows
and hands them here, so the store is held only while they are read."""

from __future__ import annotations

import hashlib
import io
import pickle

from .errors import StoredRowError
from .models import CommunityVotes
from .render import ReviewedTool, Update
from .store import Store


def digest(*parts: object) -> str:
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


def text_digest(*parts: str) -> str:
    """`digest` for parts that are short texts already (digests, names): the pages made for every
    tool (75,000 for 10,000 tools) are digested from their tools' digests this way."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def load_panels(
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
                    (Store.take_from_row(t, slug) for t in takes.get(slug, [])),
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
            digests[slug] = digest(
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


def listing_summary(t: ReviewedTool) -> tuple[object, ...]:
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


def ship_order(t: ReviewedTool) -> tuple[int, str]:
    return (-(t.verdict.ship_pct if t.verdict.ship_pct is not None else -1), t.card.slug)
