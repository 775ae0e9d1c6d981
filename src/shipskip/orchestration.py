"""A Prefect API for the flows a command runs: the user's server, or a temporary one of ours.

Prefect's own temporary server is a child process that outlives a SIGKILLed parent and keeps
its stdout open. Ours runs the same app (Prefect's `create_app` under uvicorn) on loopback,
tied to this process by `lifeline`, with its output kept off our stdout. Only commands that
run a flow start it.

On a shared server (not one of ours), the calls-in-flight setting also becomes a Prefect
global concurrency limit that every worker counts against (`seat_limit`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from . import lifeline
from .embedded import free_port
from .review import SlotFactory
from .settings import Settings

STARTUP_S = 90.0
# The Prefect global concurrency limit on calls in flight to the provider.
LLM_LIMIT = "shipskip-llm-calls"
# Temporary APIs this process started for itself: no other process counts against them.
_PRIVATE_APIS: set[str] = set()


@contextmanager
def prefect_api() -> Iterator[None]:
    import prefect
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

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
        # Flow-run heartbeats let a shared server's automations spot a crashed run. This server
        # ends with this process, so nothing could ever read them; and each sync flow run waits
        # up to a second at its end for the heartbeat thread's sleep (Prefect 3.9): 0.5-1 s of a
        # one-card review's 1.5 s overhead (bench/review_bench.py).
        temporary_settings(updates={PREFECT_API_URL: api, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        try:
            yield
        finally:
            _drain()
            _PRIVATE_APIS.discard(api)


def _drain() -> None:
    """Send Prefect's queued events and logs while the server still listens; afterwards they
    would fail, each with an error line on the console."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):  # never started
            worker.drain_all(timeout=10)


def shared_api() -> bool:
    """A Prefect server other processes may use too (a deployment's, a test harness's)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    return bool(url) and url not in _PRIVATE_APIS


def seat_limit(settings: Settings) -> SlotFactory | None:
    """SHIPSKIP_LLM_CONCURRENCY as Prefect's global concurrency limit on calls in flight, created
    or resized on the server at each flow start; what a seat holds while it is asked.

    A seat asks one question at a time, so seats in flight bound calls in flight; a slot per
    seat, not per call, keeps the cost to one acquire and release a take (0.1-0.4 s on the
    test harness, about 2 s more when a seat must wait for a slot: Prefect polls).
    On a temporary API of our own nothing else counts against the limit and the critics'
    in-process bound already holds, so none is used there."""
    if not shared_api():
        return None
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(LLM_LIMIT, settings.llm_concurrency)
        except ObjectAlreadyExists:  # another worker created it between its read and create
            client.upsert_global_concurrency_limit_by_name(LLM_LIMIT, settings.llm_concurrency)
    return partial(concurrency, LLM_LIMIT, occupy=1, strict=True)
