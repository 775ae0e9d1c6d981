"""The store's façade: one `Store` that callers hold, delegating to the modules that do the work.

- `backends` / `store_lake`: where the rows live (the DuckDB file, or a DuckLake chosen by
  SHIPSKIP_CATALOG), connections, transactions and the tools' leases;
- `migrate`: the numbered migrations and their runner;
- `ledger`: a review's run, from the lease to the commit (`begin_review` gives its `ReviewRun`);
- `queries`: the reads; `store_writes`: votes, marks, labels, prices, batches, page digests;
- `store_evals`: evaluation rows; `store_export`: Parquet loading.

SQL lives in those modules and the migrations, never here nor in their callers.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import duckdb

from . import queries, store_evals, store_export, store_writes
from .backends import Backend
from .errors import ShipskipError, ToolBusy
from .ledger import Ledger, ReviewRun, Run, RunOptions, identity_problem
from .migrate import migrations
from .models import CommunityVotes, EditorLabel, PanelVerdict, Take, ToolCard
from .store_export import EXPORT_TABLES
from .store_file import FileBackend
from .store_group import RunGroup
from .store_lake import Lake, LakeBackend

if TYPE_CHECKING:
    from .settings import Settings

# Names callers import from here, whichever module now holds them.
__all__ = ["EXPORT_TABLES", "ReviewRun", "Run", "Store", "ToolBusy", "identity_problem", "migrations"]


class Store:
    def __init__(
        self,
        path: Path | str,
        lock_wait_s: float = 30.0,
        lake: Lake | None = None,
        query_timeout_s: float | None = None,
        lease_s: float = 900.0,
        hold_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.lake = lake
        self.db: Backend = (
            LakeBackend(lake, lock_wait_s, query_timeout_s, lease_s)
            if lake is not None
            else FileBackend(self.path, lock_wait_s, query_timeout_s, lease_s, hold_s)
        )
        self.ledger = Ledger(self.db)
        if lake is not None:
            # Each DuckLake commit costs a dozen catalog round trips whatever it holds: the
            # process's runs start and its reviews commit in groups (store_group).
            self.ledger.group = RunGroup(self.ledger)

    @classmethod
    def from_settings(cls, settings: Settings, path: Path | str | None = None) -> Store:
        """The store the settings name: a DuckLake when SHIPSKIP_CATALOG is set, else the file."""
        lake = None
        if settings.catalog is not None:
            lake = Lake(settings.catalog.get_secret_value(), settings.lake_data_path)
        return cls(path or settings.db_path, lake=lake, query_timeout_s=settings.query_timeout_s,
                   lease_s=settings.lease_s, hold_s=settings.store_hold_s)  # fmt: skip

    # The backend's tunables, read and set through the store as before the split.
    @property
    def lease_s(self) -> float:
        return self.db.lease_s

    @property
    def query_timeout_s(self) -> float | None:
        return self.db.query_timeout_s

    @query_timeout_s.setter
    def query_timeout_s(self, seconds: float | None) -> None:
        self.db.query_timeout_s = seconds

    @property
    def lock_wait_s(self) -> float:
        return self.db.lock_wait_s

    @lock_wait_s.setter
    def lock_wait_s(self, seconds: float) -> None:
        self.db.lock_wait_s = seconds

    def exists(self) -> bool:
        """Whether anything was stored yet (a lake is made on first use, readers included)."""
        return self.db.exists()

    def describe(self) -> str:
        return self.db.describe()

    # -- connections (the backend's) ---------------------------------------------------

    def reading(self) -> AbstractContextManager[None]:
        return self.db.reading()

    def connect(self, read_only: bool = False) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.db.connect(read_only)

    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.db.transaction()

    def analysing(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.db.analysing()

    def sandbox(
        self, allowed_paths: list[str] | None = None
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.db.sandbox(allowed_paths)

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return self.db.query(sql, params)

    def init(self) -> None:
        with self.connect():
            pass

    def maintain(self, keep_days: int = 7) -> dict[str, int] | None:
        """On a lake, its upkeep (see `Lake.maintain`), and what it did; None on the single
        file, which DuckDB keeps compact at each checkpoint by itself. Safe while others write:
        a maintenance step that collides with a commit is run again."""
        if keep_days < 0:
            raise ShipskipError("--keep-days must be 0 or more")
        return self.db.maintain(keep_days)

    def sweep_leases(self) -> list[str]:
        """On a lake, drop tool leases whose holder is gone (see `Lake.sweep`); the slugs."""
        return self.db.sweep()

    # -- reviews (the ledger's) --------------------------------------------------------

    def begin_review(self, card: ToolCard, **options: Unpack[RunOptions]) -> ReviewRun | None:
        """The run object a review holds from claim to commit (see `Ledger.begin_run`)."""
        run = self.ledger.begin_run(card, **options)
        return None if run is None else ReviewRun(self.ledger, run)

    def begin_run(self, card: ToolCard, **options: Unpack[RunOptions]) -> Run | None:
        return self.ledger.begin_run(card, **options)

    def checkpoint(self, run: Run, take: Take) -> None:
        self.ledger.checkpoint(run, take)

    def checkpoints(self, run: Run) -> dict[str, Take]:
        return self.ledger.checkpoints(run)

    def drop_checkpoints(self, run: Run, personas: list[str]) -> None:
        self.ledger.drop_checkpoints(run, personas)

    def release_run(self, run: Run) -> None:
        self.ledger.release_run(run)

    def abandon_run(self, run: Run) -> None:
        self.ledger.abandon_run(run)

    def fail_rerun(self, run: Run, take: Take, rerun_reason: str | None) -> None:
        self.ledger.fail_rerun(run, take, rerun_reason)

    def commit_review(
        self, run: Run, card: ToolCard, takes: list[Take], verdict: PanelVerdict | None = None
    ) -> None:
        self.ledger.commit_review(run, card, takes, verdict)

    def is_reviewed(self, card: ToolCard) -> bool:
        """True when a committed review already read this exact card."""
        return card.slug in self.reviewed_among([card])

    def reviewed_among(self, cards: list[ToolCard]) -> set[str]:
        return queries.reviewed_among(self.db, cards)

    # -- reads (queries') --------------------------------------------------------------

    def current_takes(self, slug: str) -> list[Take]:
        return queries.current_takes(self.db, slug)

    def tool(self, slug: str) -> ToolCard | None:
        return queries.tool(self.db, slug)

    def similar(self, slug: str, category: str, limit: int = 5) -> list[str]:
        return queries.similar(self.db, slug, category, limit)

    def reviewer_record(self, persona: str, recent: int = 20) -> tuple[list[dict], list[dict]]:
        return queries.reviewer_record(self.db, persona, recent)

    def reviewed_at(self, slug: str) -> datetime | None:
        return queries.reviewed_at(self.db, slug)

    def history(self, slug: str, persona: str | None = None) -> list[dict[str, Any]]:
        return queries.history(self.db, slug, persona)

    def completed_between(self, start: date, end: date) -> list[str]:
        return queries.completed_between(self.db, start, end)

    def current_models(self) -> list[dict[str, Any]]:
        return queries.current_models(self.db)

    def votes(self, slug: str) -> CommunityVotes:
        return queries.votes(self.db, slug)

    def voter_choice(self, slug: str, voter: str) -> str | None:
        return queries.voter_choice(self.db, slug, voter)

    def helpful_counts(self, slug: str) -> dict[str, int]:
        return queries.helpful_counts(self.db, slug)

    def site_rows(self) -> dict[str, list[dict[str, Any]]]:
        return queries.site_rows(self.db)

    @staticmethod
    def take_from_row(row: dict[str, Any], slug: str) -> Take:
        """A `current_takes` row from `site_rows` as a Take (StoredRowError when it fails)."""
        return queries.take_from_row(row, slug)

    def page_digests(self, out_dir: str) -> dict[str, str]:
        return queries.page_digests(self.db, out_dir)

    def prices(self) -> list[dict[str, Any]]:
        return queries.prices(self.db)

    def open_batches(self) -> list[dict[str, Any]]:
        return queries.open_batches(self.db)

    def batch_requests(self, slugs: list[str]) -> dict[str, dict[str, Any]]:
        return queries.batch_requests(self.db, slugs)

    def labels(self, slug: str, persona: str | None = None, history: bool = False) -> list[EditorLabel]:
        return queries.labels(self.db, slug, persona, history)

    def label_queue(self, limit: int = 20) -> list[dict[str, Any]]:
        return queries.label_queue(self.db, limit)

    def catalogue(self) -> list[dict[str, Any]]:
        return queries.catalogue(self.db)

    # -- writes (store_writes') --------------------------------------------------------

    def add_vote(self, slug: str, vote: str, voter: str) -> bool:
        return store_writes.add_vote(self.db, slug, vote, voter)

    def add_marks(self, batch: list[tuple[str, str, str, str]]) -> list[str]:
        return store_writes.add_marks(self.db, batch)

    def add_label(self, label: EditorLabel) -> str:
        return store_writes.add_label(self.db, label)

    def set_prices(self, rows: list[tuple[str, float, float | None, float, date | None]]) -> int:
        return store_writes.set_prices(self.db, rows)

    def record_batch(self, key: str, base_url: str, model: str, requests: list[tuple[str, str]]) -> None:
        store_writes.record_batch(self.db, key, base_url, model, requests)

    def batch_submitted(self, key: str, batch_id: str | None, status: str) -> None:
        store_writes.batch_submitted(self.db, key, batch_id, status)

    def collect_batch(self, key: str, status: str, results: list[dict[str, Any]]) -> None:
        store_writes.collect_batch(self.db, key, status, results)

    def record_pages(self, out_dir: str, written: dict[str, str], removed: list[str]) -> None:
        store_writes.record_pages(self.db, out_dir, written, removed)

    # -- evaluations and Parquet -------------------------------------------------------

    def save_eval(
        self, reference: str, model: str, prompt_hash: str, samples: int, summary: dict, results: list
    ) -> str:
        return store_evals.save_eval(self.db, reference, model, prompt_hash, samples, summary, results)

    def eval_items(self, eval_id: str) -> list[dict[str, Any]]:
        return store_evals.eval_items(self.db, eval_id)

    def labelled_answers(self, model: str) -> list[dict[str, Any]]:
        return store_evals.labelled_answers(self.db, model)

    def load_parquet(self, table: str, path: Path) -> int:
        return store_export.load_parquet(self.db, table, path)
