"""A Prefect API for the flows a command runs: the user's server, or a temporary one of ours.

Prefect's own temporary server is a child process that outlives a SIGKILLed parent and keeps
its stdout open. Ours runs the same app (Prefect's `create_app` under uvicorn) on loopback,
tied to this process by `lifeline`, with its output kept off our stdout. Only commands that
run a flow start it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

from . import lifeline
from .embedded import free_port
from .review import SlotFactory
from .settings import Settings

STARTUP_S = 90.0
# Prefect global concurrency limits: calls in flight to the provider, and database writers.
LLM_LIMIT = "shipskip-llm-calls"
DB_WRITER_LIMIT = "shipskip-db-writer"
# Temporary APIs this process started for itself: no other process counts against them.
_PRIVATE_APIS: set[str] = set()


@contextmanager
def prefect_api() -> Iterator[None]:
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if PREFECT_API_URL.value():
        yield  # a real server (or a test harness) is configured: use it
        return
    port = free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    args = [
        "--app-dir", str(prefect.__module_path__.parent),
        "--factory", "prefect.server.api.server:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    _PRIVATE_APIS.add(api)
    with (
        lifeline.serve(
            "uvicorn", args, f"{api}/health", "the temporary Prefect server", startup_s=STARTUP_S, env=env
        ),
        temporary_settings(updates={PREFECT_API_URL: api}),
    ):
        try:
            yield
        finally:
            _drain()


def _drain() -> None:
    """Send Prefect's queued events and logs while the server still listens; afterwards they
    would fail, each with an error line on the console."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):  # never started
            worker.drain_all(timeout=10)


@dataclass(frozen=True)
class Slots:
    """What a flow holds while it asks a seat and while it writes the database."""

    seat: SlotFactory = nullcontext
    write: SlotFactory = nullcontext


def shared_api() -> bool:
    """A Prefect server other processes may use too (a deployment's, a test harness's)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    return bool(url) and url not in _PRIVATE_APIS


def global_limits(settings: Settings) -> Slots:
    """SHIPSKIP_LLM_CONCURRENCY as Prefect's global concurrency limit on calls in flight, and a
    limit of one database writer, created or resized on the server at each flow start.

    On a temporary API of our own nothing else counts against them, and the panel's in-process
    bound already holds, so no round trip is paid there."""
    if not shared_api():
        return Slots()
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for name, limit in ((LLM_LIMIT, settings.llm_concurrency), (DB_WRITER_LIMIT, 1)):
            try:
                client.upsert_global_concurrency_limit_by_name(name, limit)
            except ObjectAlreadyExists:  # another worker created it between read and create
                client.upsert_global_concurrency_limit_by_name(name, limit)
    return Slots(
        seat=partial(concurrency, LLM_LIMIT, occupy=1, strict=True),
        write=partial(concurrency, DB_WRITER_LIMIT, occupy=1, strict=True),
    )
