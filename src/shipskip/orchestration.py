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
from contextlib import contextmanager

from . import lifeline
from .embedded import free_port

STARTUP_S = 90.0


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
    with lifeline.serve(
        "uvicorn", args, f"{api}/health", "the temporary Prefect server", startup_s=STARTUP_S, env=env
    ), temporary_settings(updates={PREFECT_API_URL: api}):
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
