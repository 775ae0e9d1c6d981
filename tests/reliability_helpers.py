"""Shared pieces for the reliability tests: generated cards and a fake server in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_cards(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    slugs = []
    for i in range(n):
        slug = f"tool-{i:03d}"
        card = {
            "name": f"Tool {i:03d}", "slug": slug, "tagline": f"Sample tool number {i}",
            "category": ["Agents", "Video", "Models"][i % 3], "pricing": "Free", "entry_tier": "free",
            "description": f"Tool {i:03d} is a generated sample that does task {i} for developers offline.",
        }  # fmt: skip
        (folder / f"{slug}.json").write_text(json.dumps(card))
        slugs.append(slug)
    return slugs


def start_fake_process(delay_s: float, log: Path) -> tuple[subprocess.Popen, str]:
    """The fake server in a child process, so a killed review cannot take it down."""
    port_file = log.with_suffix(".port")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server_main.py"), str(delay_s), str(log), str(port_file)],
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/v1"


def logged_requests(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
