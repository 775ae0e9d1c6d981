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


def start_fake_process(
    delay_s: float, log: Path, fault_rate: float = 0.0, rate_limit: int = 0
) -> tuple[subprocess.Popen, str]:
    """The fake server in a child process, so a killed review cannot take it down; with
    `rate_limit`, it allows that many requests a second and answers a 429 beyond them."""
    port_file = log.with_suffix(".port")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server_main.py"), str(delay_s), str(log), str(port_file),
         str(fault_rate), str(rate_limit)],
    )  # fmt: skip
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


def descendants(pid: int) -> dict[int, str]:
    """PID -> command line of every process below `pid` (found through parent PIDs in /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    cmd = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                found[child] = cmd
                frontier.append(child)
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out
