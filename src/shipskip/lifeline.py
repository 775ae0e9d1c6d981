"""Child processes that end when the shipskip process that started them ends.

A server shipskip starts (the embedded llama.cpp server, a temporary Prefect API) is run as
`python -m shipskip.lifeline PARENT_PID MODULE ARGS...`: a thread watches the parent and, the
moment the child is handed to another parent (the parent exited or was SIGKILLed), ends the
child's whole process group. A normal stop still goes through SIGTERM from the parent.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 0.5


def command(module: str, args: list[str]) -> list[str]:
    """The argv that runs `python -m module args...` tied to this process's life."""
    return [sys.executable, "-m", "shipskip.lifeline", str(os.getpid()), module, *args]


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
