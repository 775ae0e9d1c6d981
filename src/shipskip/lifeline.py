"""Child processes that end when the shipskip process that started them ends.

A server shipskip starts (the embedded llama.cpp server, a temporary Prefect API) is run as
`python -m shipskip.lifeline PARENT_PID MODULE ARGS...`: a thread watches the parent and, the
moment the child is handed to another parent (the parent exited or was SIGKILLed), ends the
child's whole process group. A normal stop comes from the parent: SIGTERM, or SIGKILL for a
server that holds nothing worth a graceful shutdown.

The child side imports only the standard library: whatever this module imports, every server
start pays for before the server's own imports begin (httpx alone cost 0.13 s of a 0.7 s start).
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

POLL_S = 0.5
# How often the parent asks a starting server whether it answers yet.
READY_POLL_S = 0.02


def command(module: str, args: list[str]) -> list[str]:
    """The argv that runs `python -m module args...` tied to this process's life."""
    return [sys.executable, "-m", "shipskip.lifeline", str(os.getpid()), module, *args]


@contextmanager
def serve(
    module: str,
    args: list[str],
    health_url: str,
    what: str,
    *,
    startup_s: float,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    graceful: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m module args` as our child, wait until `health_url` answers 200, and always
    stop it: with SIGTERM, or, not `graceful`, SIGKILL. Its output goes to `log_path`, or to an
    unnamed temporary file that nothing can leave behind; the last lines are quoted if it exits
    before it answers."""
    import logging

    import httpx  # the parent's side only (see the module's note)

    from .errors import ShipskipError

    log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile(prefix="shipskip-")  # noqa: SIM115
    proc = subprocess.Popen(
        command(module, args), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    # Every server start is said, so a run's log (and a test) shows what a command started.
    logging.getLogger(__name__).info("started %s (pid %d)", what, proc.pid)
    try:
        deadline = time.monotonic() + startup_s
        # One client for the whole wait: each new one builds a TLS context (20 ms of CPU that
        # the starting server, on a small machine, would rather have).
        with httpx.Client(timeout=2) as poll:
            while not _answers(poll, health_url):
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise ShipskipError(f"{what} exited: {' | '.join(tail)}")
                if time.monotonic() > deadline:
                    raise ShipskipError(f"{what} did not answer in time")
                time.sleep(READY_POLL_S)
        yield proc
    finally:
        _stop(proc, graceful)
        log.close()


def _answers(poll: httpx.Client, url: str) -> bool:
    import httpx

    try:
        return poll.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(proc: subprocess.Popen[bytes], graceful: bool = True) -> None:
    if proc.poll() is not None:
        return
    if not graceful:
        proc.kill()
        proc.wait(timeout=10)
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    # Orphaned: nobody will stop this server, and it may hold a port, memory and a CPU.
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    parent, module, rest = int(argv[1]), argv[2], argv[3:]
    threading.Thread(target=_watch, args=(parent,), name="lifeline", daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv)
