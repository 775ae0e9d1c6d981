"""Headless Chromium driven over the DevTools protocol, for the browser tests (slow tier)."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.sync.client import connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.seq = itertools.count(1)

    def call(self, method: str, **params: object) -> dict:
        n = next(self.seq)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str) -> object:
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return res["result"].get("value")

    def load(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        for _ in range(200):
            time.sleep(0.05)
            if self.js("document.readyState") == "complete" and self.js("location.href") == url:
                return
        raise AssertionError(f"{url} did not load")

    def width(self, px: int, height: int = 900) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=px, height=height, deviceScaleFactor=1,
                  mobile=px < 600)  # fmt: skip

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    port = free_port()
    proc = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--remote-debugging-port={port}",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json").json()
                break
            except (httpx.HTTPError, ValueError):
                assert time.monotonic() < deadline, "Chromium did not start"
                time.sleep(0.3)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
