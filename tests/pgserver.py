"""A real PostgreSQL for the DuckLake catalog: initdb and pg_ctl from the OS packages, on a
free loopback port, in a temporary folder, stopped by its own data directory (never by name).

Used by the tests (a session fixture in conftest) and by bench/analytics_bench.py --lake.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian's packages keep the server programs off PATH, one folder per major version.
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    raise RuntimeError(f"PostgreSQL's {name} is not installed: run scripts/setup.sh (it installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int
    _as: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [find_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname),
             "-c", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    def new_database(self) -> str:
        name = f"lake_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def stop(self) -> None:
        subprocess.run(
            [*self._as, find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    # Under /tmp rather than pytest's folders: as root, initdb must run as the postgres user,
    # who cannot enter root's private temporary folders.
    root = Path(tempfile.mkdtemp(prefix="shipskip-pg-"))
    root.chmod(0o777)
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    server = PostgresServer(root, _free_port(), run_as)
    subprocess.run(
        [*run_as, find_bin("initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*run_as, find_bin("pg_ctl"), "-D", str(server.data), "-l", str(root / "server.log"), "-w",
         "-o", f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
               " -c max_connections=200", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    return server
