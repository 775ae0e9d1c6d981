from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from fakeopenai import FakeOpenAI  # noqa: E402
from pgserver import PostgresServer, start_postgres  # noqa: E402

from shipskip import usecases  # noqa: E402
from shipskip.cards import load_card  # noqa: E402
from shipskip.models import Take, ToolCard, Usage  # noqa: E402
from shipskip.outcome import ReviewOutcome  # noqa: E402
from shipskip.settings import get_settings  # noqa: E402
from shipskip.store import Store  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real Prefect API for the tests that run flows (13 s to start on 2 cores), so only
    modules that use it pay for it: `pytestmark = pytest.mark.usefixtures("prefect_harness")`."""
    from prefect.testing.utilities import prefect_test_harness

    # Task results (cached takes) go to a folder of this session, not the user's ~/.prefect.
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="shipskip-results-")

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL (the OS's initdb and pg_ctl) for the DuckLake catalog; each test that
    uses `lake` gets a database of its own on it."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lake(postgres: PostgresServer, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Settings that pick the DuckLake store (fresh catalog database, data under tmp_path),
    and that store: the library helpers below and any child process given os.environ use it."""
    monkeypatch.setenv("SHIPSKIP_CATALOG", postgres.conninfo(postgres.new_database()))
    monkeypatch.setenv("SHIPSKIP_LAKE_DATA_PATH", str(isolated / "lake"))
    return Store.from_settings(get_settings())


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A database file with every migration applied, made once a session by the store itself:
    applying the 25 migrations costs a test 0.3 s, copying the file a millisecond. None if the
    store left a write-ahead log beside it (then a copy would not be the whole database)."""
    path = tmp_path_factory.mktemp("migrated") / "shipskip.duckdb"
    Store(path).init()
    return None if path.with_name(path.name + ".wal").exists() else path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_db: Path | None) -> Path:
    """Each test gets its own database and output folder, and no stray provider settings.

    The database file does not exist until something opens it for writing, as in use; then it
    starts as a copy of `migrated_db` rather than empty, so the store's migration finds nothing
    left to apply. The copy is the test's own: nothing is shared between tests."""
    db = tmp_path / "shipskip.duckdb"
    connect = duckdb.connect

    def connect_migrated(database: object = ":memory:", *args: object, **kwargs: object):
        read_only = kwargs.get("read_only", args[0] if args else False)
        if migrated_db is not None and not read_only and str(database) == str(db) and not db.exists():
            shutil.copyfile(migrated_db, db)
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect_migrated)
    for var in list(os.environ):
        if var.startswith("SHIPSKIP_") or var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("SHIPSKIP_DB_PATH", str(db))
    monkeypatch.setenv("SHIPSKIP_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("SHIPSKIP_CALIBRATIONS_DIR", str(tmp_path / "calibrations"))
    monkeypatch.setenv("SHIPSKIP_MAX_RETRY_WAIT_S", "0.2")
    return tmp_path


def calibrate_as(model: str, folder: Path, figures: bool = False) -> Path:
    """Give `model` the shipped SmolLM2 calibration, as if `shipskip calibrate` had fitted it:
    tests of the panel's mechanics score the fake model as the persona files used to. Without
    `figures` its out-of-fold figures are left out, so every seat counts (SmolLM2's Futurist
    has shown no signal, and would not) and no take has a P(ship)."""
    from shipskip import calibrations

    shipped = next(calibrations.shipped_dir().glob("*.json"))
    data = calibrations.load_file(shipped).model_copy(update={"model": model, "gguf_digest": None})
    if not figures:
        data = data.model_copy(
            update={"entries": [e.model_copy(update={"figures": {}}) for e in data.entries]}
        )
    return calibrations.write(folder, data)


def shipped_prompts(prompts_dir: Path | None = None):
    """The persona prompts with the shipped SmolLM2-135M calibration on each checklist."""
    from shipskip import calibrations
    from shipskip.personas import load_prompts

    return calibrations.with_shipped(load_prompts(prompts_dir or ROOT / "prompts"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        monkeypatch.setenv("SHIPSKIP_BASE_URL", server.base_url)
        monkeypatch.setenv("SHIPSKIP_MODEL", "fake-model")
        calibrate_as("fake-model", get_settings().calibrations_dir)
        yield server


@pytest.fixture
def file_store(isolated: Path) -> Store:
    """The single DuckDB file, for behaviour only a file has (its lock, its constraints)."""
    return Store(isolated / "shipskip.duckdb")


@pytest.fixture(params=["file", pytest.param("lake", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, isolated: Path) -> Store:
    """Each store test on both backends: the file, and a DuckLake on a real PostgreSQL."""
    return request.getfixturevalue("lake" if request.param == "lake" else "file_store")


def make_card(**over: object) -> ToolCard:
    data = dict(
        name="Demo Tool",
        slug="demo-tool",
        tagline="Does a demo thing",
        category="Developer Tools",
        pricing="Free",
        entry_tier="free",
        description="Demo Tool is a command-line helper that formats demo data for developers.",
    )
    data.update(over)
    return ToolCard.model_validate(data)


def make_take(persona: str, verdict: str | None, score: int | None, text: str = "A take.") -> Take:
    if verdict is None:
        return Take.abstention(persona, "outside my lens", model="m", prompt_version="1", prompt_hash="h")
    return Take(
        persona=persona, verdict=verdict, score=score, text=text, model="m",
        prompt_version="1", prompt_hash="h", usage=Usage(prompt_tokens=10, completion_tokens=5),
    )  # fmt: skip


@pytest.fixture
def holistic(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The fake provider with the holistic scoring path (one JSON reply per seat), for tests
    of mechanics that script whole replies: dedupe, resume, faults, concurrency."""
    monkeypatch.setenv("SHIPSKIP_SCORING", "holistic")
    return fake


# The use cases as the flows call them, without Prefect: most behaviour is the library's and
# is tested here in a second; flow-only behaviour (task states, artifacts, parameter checks,
# global limits) is tested through the flows in the slow tier.


def review(card_path: str | Path, force: bool = False) -> ReviewOutcome:
    settings = get_settings()
    return usecases.review_card(
        load_card(Path(card_path)), Store.from_settings(settings), settings, force=force
    )


def ingest(source: str | Path) -> dict[str, list[str]]:
    settings = get_settings()
    return usecases.ingest(str(source), Store.from_settings(settings), settings).as_dict()


def rerun(tool: str, persona: str, reason: str, **options: str | None) -> Take:
    settings = get_settings()
    store = Store.from_settings(settings)
    inputs = usecases.rerun_inputs(tool, persona, reason, store, settings, **options)  # type: ignore[arg-type]
    return usecases.rerun(inputs, store, settings)


def compare(tool_a: str, tool_b: str) -> str:
    settings = get_settings()
    return str(usecases.compare(Store.from_settings(settings), settings, tool_a, tool_b).path)
