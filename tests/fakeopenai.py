"""A local fake OpenAI-compatible server: scripted replies and injected faults, on loopback."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer. `content` becomes the message content of a chat completion."""

    status: int = 200
    content: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # raw body, overriding everything else
    delay_s: float = 0.0
    reset: bool = False  # close the connection without answering
    finish_reason: str = "stop"
    refusal: str | None = None
    usage: tuple[int, int] = (100, 30)


def take_json(verdict: str = "ship", score: int = 80, take: str | None = None, lead: str = "") -> str:
    if verdict == "abstain":
        return json.dumps({"verdict": "abstain", "reason": take or "outside my lens"})
    text = take or "names a concrete fact from the card and judges it from my own angle."
    return json.dumps({"verdict": verdict, "score": score, "take": f"{lead} {text}".strip()})


class FakeOpenAI:
    """Answers /v1/chat/completions from a script; when the script runs out, `default` answers."""

    def __init__(self, default: Any = None) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict] = []
        self.default = default or (lambda req: Reply(content=take_json(lead=lead_of(req))))
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, req: dict) -> Reply:
        with self._lock:
            self.requests.append(req)
            if self.script:
                return self.script.pop(0)
        d = self.default
        return d(req) if callable(d) else d

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake"}]}), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                req = json.loads(self.rfile.read(length) or b"{}")
                req["_auth"] = self.headers.get("authorization", "")
                reply = fake._next(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.reset:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.body is not None:
                    body = reply.body
                elif reply.status != 200:
                    body = json.dumps({"error": {"message": f"scripted {reply.status}", "type": "x"}})
                else:
                    body = json.dumps(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": req.get("model", "fake"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": reply.finish_reason,
                                    "message": {
                                        "role": "assistant",
                                        "content": reply.content,
                                        "refusal": reply.refusal,
                                    },
                                }
                            ],
                            "usage": {
                                "prompt_tokens": reply.usage[0],
                                "completion_tokens": reply.usage[1],
                                "total_tokens": sum(reply.usage),
                            },
                        }
                    )
                self._send(reply.status, body, reply.headers)

            def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a scripted timeout): nothing to answer

        return Handler


def lead_of(req: dict) -> str:
    """The tool name the schema asks a take to open with, so default replies validate."""
    try:
        pattern = req["response_format"].get("schema") or req["response_format"]["json_schema"]["schema"]
        raw = pattern["anyOf"][0]["properties"]["take"].get("pattern", "")
    except (KeyError, TypeError):
        return ""
    return raw[1:].split(" [^", 1)[0].replace("\\", "") if raw else ""


def persona_of(req: dict) -> str:
    user = req["messages"][1]["content"]
    for name in ("Builder", "Skeptic", "Futurist", "Creator", "Founder"):
        if f"You are the {name}" in user:
            return name.lower()
    return "?"
