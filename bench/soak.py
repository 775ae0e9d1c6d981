"""Soak: everything at once against a faulty provider, then count what went wrong.

Two ingest loops over one inbox that keeps growing, a rerun loop, a vote loop and an analyst
loop run as separate `shipskip` processes for --seconds (counted from when the first two tools
are reviewed, so a slow start cannot starve the rerun and vote loops), against the fake OpenAI
server on loopback with --fault-rate of its replies broken (503, reset, broken JSON, an HTML page, a 500
that echoes the API key). One ingest is SIGKILLed midway. A last ingest then plays the next
scheduled run. Printed: duplicate reviews, lost votes, unfinished runs, orphan processes and
key bytes found anywhere (all must be 0), and how much work got through.

Usage: .venv/bin/python bench/soak.py [--seconds 120] [--fault-rate 0.1] [--json out.json]
Exit status 1 when any of the must-be-zero figures is not.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from reliability_helpers import alive, descendants, start_fake_process, write_cards  # noqa: E402


class Soak:
    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        # The timed window opens once the first tools are reviewed, so a slow start (a loaded CI
        # machine needs 20 s or more for the first ingest) cannot leave the rerun and vote loops
        # with nothing to do before the window closes.
        self.until: float | None = None
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []
        self.seen: dict[int, str] = {}  # every process below a shipskip we started
        self.counts: dict[str, int] = {}
        self.logs = work / "logs"
        self.logs.mkdir()

    def bump(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def run(self, name: str, *args: str) -> subprocess.Popen:
        n = len(self.procs)
        out = open(self.logs / f"{n:04d}-{name}.out", "w")  # noqa: SIM115
        env = self.env
        if name == "ingest":
            # Ingests start their own temporary Prefect API, as a command run by hand does, so a
            # killed one has a child server that must not outlive it.
            env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipskip", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
            cwd=self.work,
        )  # fmt: skip
        with self.lock:
            self.procs.append(proc)
        return proc

    def loop(self, name: str, args_for: Callable[[int], list[str] | None], pause_s: float = 0.0) -> None:
        i = 0
        while self.running():
            args = args_for(i)
            i += 1
            if args is None:
                time.sleep(0.5)
                continue
            rc = self.run(name, *args).wait()
            self.bump(f"{name} ok" if rc == 0 else f"{name} exit {rc}")
            time.sleep(pause_s)

    def running(self) -> bool:
        return self.until is None or time.monotonic() < self.until

    def open_window(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds
        self.opened.set()

    def watch(self, done: threading.Event) -> None:
        while not done.is_set():
            for p in list(self.procs):
                if p.poll() is None:
                    found = descendants(p.pid)
                    with self.lock:
                        self.seen.update(found)
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--delay", type=float, default=0.05, help="provider latency per request, seconds")
    ap.add_argument("--startup-s", type=float, default=300,
                    help="longest wait for the first tools to be reviewed before the timed window opens")  # fmt: skip
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", type=Path, help="folder for the run's files (default: a new temp folder)")
    args = ap.parse_args()

    from shipskip.orchestration import prefect_api
    from shipskip.store import Store

    work = args.work or Path(tempfile.mkdtemp(prefix="shipskip-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    inbox = work / "inbox"
    write_cards(inbox, 8)
    key = "sk-soak-" + secrets.token_hex(16)
    server, url = start_fake_process(args.delay, work / "requests.jsonl", args.fault_rate)
    db = work / "soak.duckdb"
    with prefect_api():
        from prefect.settings import PREFECT_API_URL

        env = {
            **os.environ, "SHIPSKIP_BASE_URL": url, "SHIPSKIP_DB_PATH": str(db), "SHIPSKIP_MODEL": "fake-model",
            "OPENAI_API_KEY": key, "SHIPSKIP_OUT_DIR": str(work / "out"), "SHIPSKIP_MAX_RETRY_WAIT_S": "1",
            "SHIPSKIP_TIMEOUT_S": "10", "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "SHIPSKIP_CALIBRATIONS_DIR": str(work / "calibrations"),  # not the checkout's data/
        }  # fmt: skip
        started = time.monotonic()
        soak = Soak(work, env)
        store = Store(db)

        def reviewed(slug: str) -> bool:
            try:
                return bool(store.query("SELECT 1 FROM tools WHERE slug = ?", [slug]))
            except Exception:
                return False

        def feed() -> None:
            n = 8
            while soak.running():
                time.sleep(3)
                write_cards(inbox, n + 1)  # adds the next card; rewrites the others unchanged
                n += 1
            soak.bump("cards", n)

        def opener() -> None:
            # Opens the window when the rerun, vote and query loops have their tools, or after
            # the start-up allowance, whichever comes first (then the figures show what ran).
            deadline = time.monotonic() + args.startup_s
            while not (reviewed("tool-000") and reviewed("tool-001")) and time.monotonic() < deadline:
                time.sleep(0.5)
            soak.bump("seconds before the window opened", round(time.monotonic() - started))
            soak.open_window(args.seconds)

        def killer() -> None:
            soak.opened.wait()
            time.sleep(args.seconds / 2)
            with soak.lock:
                ingests = [p for p in soak.procs if p.args[3] == "ingest" and p.poll() is None]
            if ingests:
                ingests[0].send_signal(signal.SIGKILL)
                soak.bump("ingests killed")

        def ingest(i: int) -> list[str]:
            return ["ingest", str(inbox)]

        def rerun(i: int) -> list[str] | None:
            return ["rerun", "tool-000", "skeptic", "--reason", f"soak {i}"] if reviewed("tool-000") else None

        def vote(i: int) -> list[str] | None:
            choice = "ship" if i % 3 else "skip"
            return ["vote", "tool-001", choice, "--voter", f"voter-{i}"] if reviewed("tool-001") else None

        def query(i: int) -> list[str] | None:
            sql = "SELECT label, count(*) AS n FROM panel_verdicts GROUP BY label"
            return ["sql", sql] if reviewed("tool-000") else None

        loops = [
            threading.Thread(target=soak.loop, args=("ingest", ingest)),
            threading.Thread(target=soak.loop, args=("ingest", ingest, 0.7)),
            *(
                threading.Thread(target=soak.loop, args=(name, command))
                for name, command in (("rerun", rerun), ("vote", vote), ("sql", query))
            ),
            threading.Thread(target=feed),
            threading.Thread(target=opener),
            threading.Thread(target=killer),
        ]
        done = threading.Event()
        watcher = threading.Thread(target=soak.watch, args=(done,), daemon=True)
        for t in loops:
            t.start()
        watcher.start()
        for t in loops:
            t.join()
        # The next scheduled run finishes what the killed ingest left.
        rc = soak.run("ingest-final", "ingest", str(inbox)).wait()
        soak.bump("final ingest exit", rc)
        done.set()
        watcher.join()
        elapsed = time.monotonic() - started
    server.kill()
    server.wait()

    time.sleep(2)
    orphans = alive(list(soak.seen))
    cards = sorted(p.stem for p in inbox.glob("*.json"))
    q = store.query
    figures = {
        "seconds": round(elapsed, 1),
        "fault rate": args.fault_rate,
        "requests to the provider": len((work / "requests.jsonl").read_text().splitlines()),
        "cards in the inbox": len(cards),
        "tools reviewed": q(
            "SELECT count(DISTINCT slug) AS n FROM runs WHERE kind = 'review' AND status = 'complete'"
        )[0]["n"],  # fmt: skip
        "takes stored": q("SELECT count(*) AS n FROM takes")[0]["n"],
        "reruns kept": q("SELECT count(*) AS n FROM runs WHERE kind = 'rerun'")[0]["n"],
        "reruns failed (kept in history)": q("SELECT count(*) AS n FROM failed_reruns")[0]["n"],
        "process runs": dict(sorted(soak.counts.items())),
        "child processes seen": len(soak.seen),
        # Must all be 0:
        "duplicate reviews": q(
            "SELECT count(*) AS n FROM (SELECT slug, content_hash FROM runs"
            " WHERE kind = 'review' GROUP BY ALL HAVING count(*) > 1)"
        )[0]["n"],  # fmt: skip
        "duplicate takes": q(
            "SELECT count(*) AS n FROM (SELECT run_id, persona FROM takes GROUP BY ALL HAVING count(*) > 1)"
        )[0]["n"],  # fmt: skip
        "cards never reviewed": len(set(cards) - {r["slug"] for r in q("SELECT slug FROM tools")}),
        "reviews missing a seat": q(
            "SELECT count(*) AS n FROM (SELECT run_id FROM takes JOIN runs"
            " USING (run_id) WHERE kind = 'review' GROUP BY run_id"
            " HAVING count(*) <> 5)"
        )[0]["n"],  # fmt: skip
        "lost votes": soak.counts.get("vote ok", 0) - q("SELECT count(*) AS n FROM votes")[0]["n"],
        "failed votes": sum(v for k, v in soak.counts.items() if k.startswith("vote exit")),
        "failed analyst queries": sum(v for k, v in soak.counts.items() if k.startswith("sql exit")),
        "runs left unfinished": q("SELECT count(*) AS n FROM runs WHERE status <> 'complete'")[0]["n"],
        "orphan processes": len(orphans),
        "files holding key bytes": _files_with(work, key.encode()),
    }
    must_be_zero = [
        "duplicate reviews", "duplicate takes", "cards never reviewed", "reviews missing a seat",
        "lost votes", "failed votes", "failed analyst queries", "runs left unfinished",
        "orphan processes", "files holding key bytes",
    ]  # fmt: skip
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        args.json.write_text(json.dumps({**figures, "work": str(work)}, indent=2))
    bad = [k for k in must_be_zero if figures[k]]
    if bad:
        print(f"FAILED: {', '.join(bad)}; see {work}")
        sys.exit(1)


def _files_with(folder: Path, needle: bytes) -> int:
    hits = 0
    for path in folder.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits += 1
    return hits


if __name__ == "__main__":
    main()
