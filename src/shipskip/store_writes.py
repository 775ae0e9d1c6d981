"""The store's writes other than a review's (`ledger`): readers' votes and "Helpful?" marks,
editors' labels, model prices, batch jobs and the site's page digests. Each is one
transaction, run again whole if it loses a lake's conflict."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from datetime import date

from . import backends
from .backends import Backend, again_on_conflict
from .errors import ShipskipError, UnknownTool
from .models import EditorLabel
from .queries import PRICE_COLUMNS

# -- readers' votes and marks ----------------------------------------------------------


def _vote_key(slug: str, voter: str) -> str:
    # One voter on one tool at a time: a vote reads, then inserts or updates, and DuckLake
    # lets two inserts into one table commit side by side (the file needs no lock: its
    # writers take turns, and its backend's `hold` does nothing).
    return f"vote:{slug}:{voter}"


@again_on_conflict
def add_vote(db: Backend, slug: str, vote: str, voter: str) -> bool:
    """Record or change `voter`'s vote on a tool; True when it changed an earlier vote."""
    with db.hold(_vote_key(slug, voter)):
        now = backends.now()
        with db.transaction() as con:
            if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [slug]).fetchone():
                raise ShipskipError(f"no reviewed tool with slug '{slug}'")
            earlier = con.execute(
                "SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter]
            ).fetchone()
            if earlier:
                con.execute(
                    "UPDATE votes SET vote = ?, updated_at = ? WHERE slug = ? AND voter = ?",
                    [vote, now, slug, voter],
                )
            else:
                con.execute(
                    "INSERT INTO votes (slug, vote, created_at, voter, updated_at) VALUES (?, ?, ?, ?, ?)",
                    [slug, vote, now, voter, now],
                )
        return earlier is not None


@again_on_conflict
def add_marks(db: Backend, batch: list[tuple[str, str, str, str]]) -> list[str]:
    """Readers' votes and "Helpful?" marks from `shipskip web`, many in one short
    transaction (DuckDB has one writer per file: a transaction per click would queue).
    Each item is (kind, slug, value, voter): kind "vote" with value ship/skip, changeable as
    `add_vote`; kind "helpful" with value a persona, once per reader. Returns, per item,
    "recorded", "changed", "unchanged", or "unknown" for a slug (or persona) with no
    current take, which stores nothing. Each voter's lock on a tool is held as `add_vote`
    holds it (taken in sorted order, so two writers never wait on each other's)."""
    keys = sorted({_vote_key(s, w) if k == "vote" else f"helpful:{s}:{v}:{w}" for k, s, v, w in batch})
    out: list[str] = []
    with ExitStack() as held:
        for key in keys:
            held.enter_context(db.hold(key))
        now = backends.now()
        with db.transaction() as con:
            for kind, slug, value, voter in batch:
                if kind == "vote":
                    if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [slug]).fetchone():
                        out.append("unknown")
                        continue
                    earlier = con.execute(
                        "SELECT vote FROM votes WHERE slug = ? AND voter = ?", [slug, voter]
                    ).fetchone()
                    if earlier is None:
                        con.execute(
                            "INSERT INTO votes (slug, vote, created_at, voter, updated_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            [slug, value, now, voter, now],
                        )
                        out.append("recorded")
                    elif earlier[0] == value:
                        out.append("unchanged")
                    else:
                        con.execute(
                            "UPDATE votes SET vote = ?, updated_at = ? WHERE slug = ? AND voter = ?",
                            [value, now, slug, voter],
                        )
                        out.append("changed")
                    continue
                has_take = con.execute(
                    "SELECT 1 FROM current_takes WHERE slug = ? AND persona = ? AND verdict IS NOT NULL",
                    [slug, value],
                ).fetchone()
                if not has_take:
                    out.append("unknown")
                    continue
                if con.execute(
                    "SELECT 1 FROM helpful_marks WHERE slug = ? AND persona = ? AND voter = ?",
                    [slug, value, voter],
                ).fetchone():
                    out.append("unchanged")
                    continue
                con.execute(
                    "INSERT INTO helpful_marks (slug, persona, voter, created_at) VALUES (?, ?, ?, ?)",
                    [slug, value, voter, now],
                )
                out.append("recorded")
    return out


# -- editors' labels -------------------------------------------------------------------


@again_on_conflict
def add_label(db: Backend, label: EditorLabel) -> str:
    """Store an editor's call on a persona, tied to the persona's current take; the editor's earlier
    label on that persona stays as history (`current_labels` shows the newest). Its id."""
    label_id = uuid.uuid4().hex
    with db.transaction() as con:
        if not con.execute("SELECT 1 FROM tools WHERE slug = ?", [label.slug]).fetchone():
            raise UnknownTool(label.slug)
        take = con.execute(
            "SELECT take_id FROM current_takes WHERE slug = ? AND persona = ?", [label.slug, label.persona]
        ).fetchone()
        con.execute(
            "INSERT INTO labels (label_id, slug, persona, editor, verdict, score, reason, take_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [label_id, label.slug, label.persona, label.editor, label.verdict, label.score,
             label.reason, take[0] if take else None, label.created_at or backends.now()],
        )  # fmt: skip
    return label_id


# -- prices ------------------------------------------------------------------------------


@again_on_conflict
def set_prices(db: Backend, rows: list[tuple[str, float, float | None, float, date | None]]) -> int:
    """Put these prices (model, input, cached input, output, as of) in model_prices, each
    replacing its model's row; rows already as given are left alone, so a run that changes
    no price writes nothing (no commit on a lake). Returns how many rows changed."""
    with db.transaction() as con:
        have = {
            r[0]: tuple(r)
            for r in con.execute(f"SELECT {', '.join(PRICE_COLUMNS)} FROM model_prices").fetchall()
        }
        changed = [tuple(r) for r in rows if have.get(r[0]) != tuple(r)]
        for row in changed:
            con.execute("DELETE FROM model_prices WHERE model = ?", [row[0]])
            con.execute(
                f"INSERT INTO model_prices ({', '.join(PRICE_COLUMNS)}) VALUES (?, ?, ?, ?, ?)", list(row)
            )
    return len(changed)


# -- batch mode ----------------------------------------------------------------------------


@again_on_conflict
def record_batch(db: Backend, key: str, base_url: str, model: str, requests: list[tuple[str, str]]) -> None:
    """A batch job about to be submitted, with its (custom_id, slug) requests: recorded
    first, so a run killed before it learns the job's id finds the job by its key."""
    now = backends.now()
    with db.transaction() as con:
        con.execute(
            "INSERT INTO llm_batches (batch_key, base_url, model, requests, status, created_at)"
            " VALUES (?, ?, ?, ?, 'submitting', ?)",
            [key, base_url, model, len(requests), now],
        )
        con.executemany(
            "INSERT INTO batch_requests (custom_id, batch_key, slug, state, prompt_tokens,"
            " completion_tokens, updated_at) VALUES (?, ?, ?, 'submitted', 0, 0, ?)",
            [[cid, key, slug, now] for cid, slug in requests],
        )


@again_on_conflict
def batch_submitted(db: Backend, key: str, batch_id: str | None, status: str) -> None:
    """The provider's id of a recorded job (None: it was never submitted; forget it)."""
    with db.transaction() as con:
        if batch_id is None:
            con.execute("DELETE FROM batch_requests WHERE batch_key = ?", [key])
            con.execute("DELETE FROM llm_batches WHERE batch_key = ?", [key])
            return
        con.execute(
            "UPDATE llm_batches SET batch_id = ?, status = ? WHERE batch_key = ?", [batch_id, status, key]
        )


@again_on_conflict
def collect_batch(db: Backend, key: str, status: str, results: list[dict]) -> None:
    """A finished job: each request's answer (state, p_yes, source, tokens, model, error),
    every request of it settled as answered or failed, and the job marked collected."""
    now = backends.now()
    with db.transaction() as con:
        for r in results:
            con.execute(
                "UPDATE batch_requests SET state = ?, p_yes = ?, source = ?, prompt_tokens = ?,"
                " completion_tokens = ?, model = ?, error = ?, updated_at = ?"
                " WHERE custom_id = ? AND batch_key = ?",
                [r["state"], r.get("p_yes"), r.get("source"), r.get("prompt_tokens", 0),
                 r.get("completion_tokens", 0), r.get("model"), r.get("error"), now, r["custom_id"], key],
            )  # fmt: skip
        # Lines the provider returned nothing for (an expired job's unrun lines) failed.
        con.execute(
            "UPDATE batch_requests SET state = 'failed', error = ?, updated_at = ?"
            " WHERE batch_key = ? AND state = 'submitted'",
            [f"no result (job {status})", now, key],
        )
        con.execute(
            "UPDATE llm_batches SET status = ?, collected_at = ? WHERE batch_key = ?", [status, now, key]
        )


# -- the site ----------------------------------------------------------------------------


@again_on_conflict
def record_pages(db: Backend, out_dir: str, written: dict[str, str], removed: list[str]) -> None:
    """Remember the digests of pages just written, and forget the pages just removed, in one
    short transaction (lists bound whole: a row per call took 1 ms a page)."""
    gone = [*written, *removed]
    if not gone:
        return
    with db.transaction() as con:
        con.execute(
            "DELETE FROM page_digests WHERE out_dir = ? AND path IN (SELECT unnest(?))", [out_dir, gone]
        )
        if written:
            con.execute(
                "INSERT INTO page_digests (out_dir, path, digest, written_at)"
                " SELECT ?, unnest(?), unnest(?), ?",
                [out_dir, list(written), list(written.values()), backends.now()],
            )
