"""A Prefect API for the flows a command runs: the user's server, or a temporary one of ours.

Prefect's own temporary server is a child process that outlives a SIGKILLed parent and keeps
its stdout open. Ours runs the same app (Prefect's `create_app` under uvicorn) on loopback,
tied to this process by `lifeline`, with its output kept off our stdout. Only commands that
run a flow start it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from . import lifeline
from .embedded import free_port
from .errors import ShipskipError

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
    with tempfile.TemporaryFile(prefix="shipskip-prefect-") as log:
        proc = subprocess.Popen(
            lifeline.command("uvicorn", args), env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.monotonic() + STARTUP_S
            while not _healthy(api):
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-2:]
                    raise ShipskipError(f"the temporary Prefect server exited: {' | '.join(tail)}")
                if time.monotonic() > deadline:
                    raise ShipskipError("the temporary Prefect server did not answer in time")
                time.sleep(0.1)
            with temporary_settings(updates={PREFECT_API_URL: api}):
                try:
                    yield
                finally:
                    _drain()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drain() -> None:
    """Send Prefect's queued events and logs while the server still listens; afterwards they
    would fail, each with an error line on the console."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):  # never started
            worker.drain_all(timeout=10)


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
