"""The store's writes other than a review's (`ledger`): readers' votes and "Helpful?" marks,
editors' labels, model prices, batch jobs and the site's page digests. Each is one
transaction, run again whole if it loses a lake's conflict."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime

from duckdb import DuckDBPyConnection

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


def add_vote(db: Backend, slug: str, vote: str, voter: str) -> bool:
    """Record or change `voter`'s vote on a tool; True when the voter had voted on it before.
    One vote is a batch of one: the web's batches and the CLI's vote are one code path."""
    (result,) = add_marks(db, [("vote", slug, vote, voter)])
    if result == "unknown":
        raise ShipskipError(f"no reviewed tool with slug '{slug}'")
    return result in ("changed", "unchanged")


@again_on_conflict
def add_marks(db: Backend, batch: list[tuple[str, str, str, str]]) -> list[str]:
    """Readers' votes and "Helpful?" marks from `shipskip web`, many in one short
    transaction (DuckDB has one writer per file: a transaction per click would queue).
    Each item is (kind, slug, value, voter): kind "vote" with value ship/skip, changeable as
    `add_vote`; kind "helpful" with value a persona, once per reader. Returns, per item,
    "recorded", "changed", "unchanged", or "unknown" for a slug (or persona) with no
    current take, which stores nothing. Each voter's lock on a tool is held as `add_vote`
    holds it (taken in sorted order, so two writers never wait on each other's).

    A batch costs a few statements whatever its size (which tools and seats exist, what these
    readers stored before, then one INSERT and one UPDATE per table): a query per item made a
    500-vote batch 1,500 statements long while every client waited on it. The items are
    settled in their order in Python, as one at a time would settle them, so a reader's second
    item in one batch sees the first."""
    keys = sorted({_vote_key(s, w) if k == "vote" else f"helpful:{s}:{v}:{w}" for k, s, v, w in batch})
    votes = [(s, v, w) for k, s, v, w in batch if k == "vote"]
    marks = [(s, v, w) for k, s, v, w in batch if k != "vote"]
    with ExitStack() as held:
        for key in keys:
            held.enter_context(db.hold(key))
        now = backends.now()
        with db.transaction() as con:
            vote_of = _settle_votes(con, votes, now)
            mark_of = _settle_marks(con, marks, now)
    return [next(vote_of) if k == "vote" else next(mark_of) for k, _, _, _ in batch]


def _pairs(con: DuckDBPyConnection, sql: str, a: list[str], b: list[str]) -> list[tuple]:
    # (a, b) pairs bound as two lists and joined as a table: one statement for any number.
    return con.execute(sql, [a, b]).fetchall() if a else []


def _settle_votes(con: DuckDBPyConnection, votes: list[tuple[str, str, str]], now: datetime) -> Iterator[str]:
    slugs = sorted({s for s, _, _ in votes})
    found = con.execute("SELECT slug FROM tools WHERE slug IN (SELECT unnest(?))", [slugs]) if slugs else None
    known = {r[0] for r in found.fetchall()} if found else set()
    asked = sorted({(s, w) for s, _, w in votes if s in known})
    stored: dict[tuple[str, str], str] = {
        (s, w): v
        for s, w, v in _pairs(
            con,
            "SELECT v.slug, v.voter, v.vote FROM votes v"
            " JOIN (SELECT unnest(?) AS slug, unnest(?) AS voter) p ON v.slug = p.slug AND v.voter = p.voter",
            [s for s, _ in asked],
            [w for _, w in asked],
        )
    }
    now_of = dict(stored)  # each pair's vote as the items so far leave it
    changed: set[tuple[str, str]] = set()
    out: list[str] = []
    for slug, value, voter in votes:
        pair = (slug, voter)
        if slug not in known:
            out.append("unknown")
        elif pair not in now_of:
            out.append("recorded")
        elif now_of[pair] == value:
            out.append("unchanged")
        else:
            out.append("changed")
            changed.add(pair)
        if slug in known:
            now_of[pair] = value
    new = [(p, now_of[p]) for p in sorted(now_of) if p not in stored]
    if new:
        con.execute(
            "INSERT INTO votes (slug, vote, created_at, voter, updated_at)"
            " SELECT unnest(?), unnest(?), ?, unnest(?), ?",
            [[s for (s, _), _ in new], [v for _, v in new], now, [w for (_, w), _ in new], now],
        )
    again = [(p, now_of[p]) for p in sorted(changed) if p in stored]
    if again:
        con.execute(
            # Every value in the FROM list: DuckDB numbers a SET clause's `?` after it.
            "UPDATE votes SET vote = p.vote, updated_at = p.at"
            " FROM (SELECT unnest(?) AS slug, unnest(?) AS voter, unnest(?) AS vote, ? AS at) p"
            " WHERE votes.slug = p.slug AND votes.voter = p.voter",
            [[s for (s, _), _ in again], [w for (_, w), _ in again], [v for _, v in again], now],
        )
    return iter(out)


def _settle_marks(con: DuckDBPyConnection, marks: list[tuple[str, str, str]], now: datetime) -> Iterator[str]:
    seats = sorted({(s, p) for s, p, _ in marks})
    held = set(
        _pairs(
            con,
            "SELECT t.slug, t.persona FROM current_takes t"
            " JOIN (SELECT unnest(?) AS slug, unnest(?) AS persona) p"
            " ON t.slug = p.slug AND t.persona = p.persona"
            " WHERE t.verdict IS NOT NULL",
            [s for s, _ in seats],
            [p for _, p in seats],
        )
    )
    asked = sorted({(s, p, w) for s, p, w in marks if (s, p) in held})
    done: set[tuple[str, str, str]] = set()
    if asked:
        done = {
            (r[0], r[1], r[2])
            for r in con.execute(
                "SELECT m.slug, m.persona, m.voter FROM helpful_marks m"
                " JOIN (SELECT unnest(?) AS slug, unnest(?) AS persona, unnest(?) AS voter) p"
                " ON m.slug = p.slug AND m.persona = p.persona AND m.voter = p.voter",
                [[s for s, _, _ in asked], [p for _, p, _ in asked], [w for _, _, w in asked]],
            ).fetchall()
        }
    out: list[str] = []
    new: list[tuple[str, str, str]] = []
    for slug, persona, voter in marks:
        if (slug, persona) not in held:
            out.append("unknown")
        elif (slug, persona, voter) in done:
            out.append("unchanged")
        else:
            out.append("recorded")
            done.add((slug, persona, voter))
            new.append((slug, persona, voter))
    if new:
        con.execute(
            "INSERT INTO helpful_marks (slug, persona, voter, created_at)"
            " SELECT unnest(?), unnest(?), unnest(?), ?",
            [[s for s, _, _ in new], [p for _, p, _ in new], [w for _, _, w in new], now],
        )
    return iter(out)


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
