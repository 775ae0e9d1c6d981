"""A Prefect API for the flows a command runs: the user's server, or a temporary one of ours.

Prefect's own temporary server is a child process that outlives a SIGKILLed parent and keeps
its stdout open. Ours runs the same app (Prefect's `create_app` under uvicorn) on loopback,
tied to this process by `lifeline`, with its output kept off our stdout. Only commands that
run a flow start it.

On a shared server (not one of ours), the calls-in-flight setting also becomes a Prefect
global concurrency limit that every worker counts against (`persona_limit`).

Also how a flow ends on a user's error (`failed`: one line, no traceback), and `shipskip
serve`'s worker, which stops on SIGTERM within its grace period (`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import lifeline
from .embedded import free_port
from .errors import ShipskipError
from .models import clean_text
from .review import SlotFactory
from .settings import Settings, get_settings, quiet_prefect

if TYPE_CHECKING:
    from prefect.states import State

STARTUP_S = 90.0
# The Prefect global concurrency limit on calls in flight to the provider.
LLM_LIMIT = "shipskip-llm-calls"
# How long a persona waits for a global slot before asking again (`Panel.ask`): not a tunable,
# how soon a waiting persona notices that its process is stopping.
SLOT_WAIT_S = 1.0
# After the grace period's kill, how long the runner has (marking its killed runs Crashed
# included) to notice and end before the worker ends itself.
STOP_MARGIN_S = 2.0
# Temporary APIs this process started for itself: no other process counts against them.
_PRIVATE_APIS: set[str] = set()


@contextmanager
def prefect_api() -> Iterator[None]:
    quiet_prefect()  # before Prefect is first imported: no analytics, quiet logs
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


def failed(exc: ShipskipError) -> State:
    """How a flow ends on a user's error (an unknown tool or persona, a bad parameter, a card
    that does not load): one line in the run's log at ERROR, which the worker prints, and a
    Failed state whose message is that line. No traceback: the line says what to fix. With
    debug logging on (PREFECT_LOGGING_LEVEL=DEBUG, or SHIPSKIP_DEBUG=1) the traceback is logged
    too. The exception stays the state's data, so a caller in this process (the CLI) gets it
    back as it was raised."""
    from prefect import get_run_logger
    from prefect.states import Failed

    # One line, with no control characters: the message may quote a parameter or a card.
    line = clean_text(str(exc)) or type(exc).__name__
    get_run_logger().error(line, exc_info=exc if _debug() else None)
    exc.said = True
    return Failed(message=line, data=exc)


def _debug() -> bool:
    return get_settings().debug or logging.getLogger("prefect").isEnabledFor(logging.DEBUG)


FlowT = TypeVar("FlowT")


class _NoParameterDump(logging.Filter):
    """Prefect's `Flow.validate_parameters` logs pydantic's raw errors and every parameter,
    over several lines, before it raises; the one line it raises says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName != "validate_parameters"


class _OneLineUserErrors(logging.Filter):
    """Run by a worker, a failed flow run's exception is raised again once the run has ended,
    and Prefect's engine logs it with its traceback ("Engine execution exited with unexpected
    exception"). A ShipskipError the run already said in one line is not said again; another
    is said in one line, without the traceback. With debug logging on, both stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ShipskipError) or _debug():
            return True
        if exc.said:
            return False
        record.msg, record.args = clean_text(str(exc)) or type(exc).__name__, ()
        record.exc_info, record.exc_text = None, None
        return True


class _NoSlotWaitTimeouts(logging.Filter):
    """A persona waits for a global slot `SLOT_WAIT_S` at a time, and Prefect's slot service logs
    each wait that ran out as an ERROR ("failed to process item ..."); those are expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        item = record.args[-1] if isinstance(record.args, tuple) and record.args else None
        done = item[-1] if isinstance(item, tuple) and item else None
        return not (
            isinstance(done, Future)
            and done.done()
            and not done.cancelled()
            and isinstance(done.exception(), TimeoutError)
        )


def _quiet_user_errors() -> None:
    """The filters above, on the loggers Prefect's flow engine and worker-side engine use."""
    for name, kind in (
        ("prefect.flows", _NoParameterDump),
        ("prefect.flow_runs", _OneLineUserErrors),
        ("prefect.engine", _OneLineUserErrors),
    ):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())


def one_line_parameter_errors(flow: FlowT) -> FlowT:
    """Prefect refuses a parameter its type does not allow (a persona that is not one, a
    reason too short) before the flow runs, and fails the run with a message of one line per
    problem, which its log and state message repeat. This makes it one line: "persona: Input
    should be ...; reason: ...", and keeps Prefect from logging a user's error again with its
    traceback (`_OneLineUserErrors`). Put it above `@flow`."""
    from prefect.exceptions import ParameterTypeError

    _quiet_user_errors()
    check = flow.validate_parameters  # type: ignore[attr-defined]

    def validate(parameters: dict[str, Any]) -> dict[str, Any]:
        try:
            return check(parameters)
        except ParameterTypeError as exc:
            problems = [ln.strip(" -") for ln in str(exc).splitlines()[1:]] or [str(exc)]
            raise ParameterTypeError(clean_text("; ".join(problems))) from None

    flow.validate_parameters = validate  # type: ignore[attr-defined]
    return flow


def shared_api() -> bool:
    """A Prefect server other processes may use too (a deployment's, a test harness's)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    return bool(url) and url not in _PRIVATE_APIS


def persona_limit(settings: Settings) -> SlotFactory | None:
    """SHIPSKIP_LLM_CONCURRENCY as Prefect's global concurrency limit on calls in flight, created
    or resized on the server at each flow start; what a persona holds while it is asked.

    A persona asks one question at a time, so personas in flight bound calls in flight; a slot per
    persona, not per call, keeps the cost to one acquire and release a take (0.1-0.4 s on the
    test harness, about 2 s more when a persona must wait for a slot: Prefect polls).
    On a temporary API of our own nothing else counts against the limit and the panel'
    in-process bound already holds, so none is used there."""
    if not shared_api():
        return None
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    slots_log = logging.getLogger("prefect._internal.concurrency")
    if not any(isinstance(f, _NoSlotWaitTimeouts) for f in slots_log.filters):
        slots_log.addFilter(_NoSlotWaitTimeouts())
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(LLM_LIMIT, settings.llm_concurrency)
        except ObjectAlreadyExists:  # another worker created it between its read and create
            client.upsert_global_concurrency_limit_by_name(LLM_LIMIT, settings.llm_concurrency)
    return partial(concurrency, LLM_LIMIT, occupy=1, strict=True, timeout_seconds=SLOT_WAIT_S)


def serve(*deployments: Any, grace_s: float, say: Callable[[str], None]) -> None:
    """Prefect's `serve` (a runner that starts each scheduled run of `deployments` as a child
    process), with a stop that keeps its word.

    On SIGTERM it takes no more runs at once, and Prefect's runner sends each run in flight
    SIGTERM: the run's personas stop before their next call to the provider, its finished takes
    stay checkpointed (the next run resumes from them) and its tool's lease is let go. A run
    still there after `grace_s` is killed (SIGKILL loses only the personas that were mid-way;
    their tool's lease goes to the next run, as after a crash), and the worker exits: where
    Prefect's own runner waits 30 s. A second SIGTERM kills the runs and exits at once."""
    from prefect.runner import Runner

    stopped = threading.Event()

    class Worker(Runner):
        terms = 0
        in_flight: set[Any] = set()

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self.terms += 1
            if self.terms > 1:
                # At once: their runs stay Running on the server until their leases run out.
                say("SIGTERM again: killing the runs in flight and exiting now")
                _kill_children()
                os._exit(128 + signal.SIGTERM)
            if self.started and self._loop is not None:
                with contextlib.suppress(Exception):  # Prefect's runner's own bookkeeping
                    self.in_flight = set(self._process_manager.flow_run_ids())
                say(f"SIGTERM: taking no more runs; stopping those in flight (at most {grace_s:g} s)")
                threading.Thread(target=self._deadline, name="shipskip-stop", daemon=True).start()
            super().handle_sigterm(*args, **kwargs)

        def _deadline(self) -> None:
            end = time.monotonic() + grace_s + STOP_MARGIN_S
            if stopped.wait(grace_s):
                return
            say(f"runs still in flight after {grace_s:g} s: killing them")
            _kill_children()
            self._crashed(f"killed {grace_s:g} s after SIGTERM")
            # The runner notices its runs are gone and ends; if it does not, end it here.
            if not stopped.wait(max(0.0, end - time.monotonic())):
                os._exit(128 + signal.SIGTERM)

        def _crashed(self, why: str) -> None:
            """Mark the killed runs Crashed, so the server lets go of their deployment's
            concurrency slot now rather than when its lease runs out (the next scheduled run
            would wait for it). Bounded: the worker is on its way out."""
            from prefect.client.orchestration import get_client
            from prefect.states import Crashed

            message = f"the worker stopped: {why}; the next run resumes from its checkpoints"
            with (
                contextlib.suppress(Exception),
                get_client(sync_client=True, httpx_settings={"timeout": 1.0}) as client,
            ):
                for run_id in self.in_flight:
                    state = client.read_flow_run(run_id).state
                    if state is None or not state.is_final():
                        client.set_flow_run_state(run_id, Crashed(message=message))

    runner = Worker()
    for deployment in deployments:
        runner.add_deployment(deployment)
    names = ", ".join(d.name for d in deployments)
    say(f"serving {names}; SIGTERM or Ctrl-C stops")
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    finally:
        stopped.set()


def _kill_children() -> None:
    """SIGKILL every child of this process (the runs in flight), with its process group when
    it leads one. Servers a run started die with it (`lifeline`)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            pid = int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
        if ppid != me:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
