"""A local fake OpenAI-compatible server: scripted replies and injected faults, on loopback."""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
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
    trickle_s: float = 0.0  # send the body one byte at a time, this many seconds apart
    reset: bool = False  # close the connection without answering
    finish_reason: str = "stop"
    refusal: str | None = None
    usage: tuple[int, int] = (100, 30)
    cached: int = 0  # of the prompt tokens, how many the provider served from its cache
    # Alternatives at the first answer token as (token, probability), sent as top_logprobs
    # when the request asks for log-probabilities.
    logprobs: list[tuple[str, float]] | None = None
    model: str | None = None  # the model the reply says answered; the requested one by default


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
        self.default = default or standard_answer
        self._lock = threading.Lock()
        # Rate-limited mode: at most this many requests in each one-second window (counted as
        # they arrive); beyond it a 429 with Retry-After, and every answer carries OpenAI's
        # x-ratelimit-* headers. `limited` counts the 429s; `on_limited` sees each refused request.
        self.rate_limit: int | None = None
        self.limited = 0
        self.on_limited: Callable[[dict], None] | None = None
        self._started = time.monotonic()
        self._window = (-1, 0)  # (window number, requests admitted in it)
        # Files and Batches endpoints. A job answers each line with `default`, as a direct
        # request would be; scripted: how many retrieves it stays in progress, how it ends
        # ("completed" or "expired"; expired, only the first `batch_ran` lines ran), and which
        # lines fail. `batch_lines` records every line a job ran.
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_polls = 0
        self.batch_end = "completed"
        self.batch_ran: int | None = None
        self.batch_fails: Callable[[dict], bool] = lambda body: False
        self.batch_lines: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, once per test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _admit(self) -> tuple[bool, dict[str, str]]:
        """Whether a request is let through the rate limit now, and the headers to answer with."""
        if self.rate_limit is None:
            return True, {}
        with self._lock:
            elapsed = time.monotonic() - self._started
            window = int(elapsed)
            used = self._window[1] if self._window[0] == window else 0
            admitted = used < self.rate_limit
            if admitted:
                used += 1
            self._window = (window, used)
            if not admitted:
                self.limited += 1
        reset = window + 1 - elapsed
        headers = {
            "x-ratelimit-limit-requests": str(self.rate_limit),
            "x-ratelimit-remaining-requests": str(self.rate_limit - used),
            "x-ratelimit-reset-requests": f"{reset * 1000:.0f}ms",
        }
        if not admitted:
            headers.update({"retry-after-ms": f"{reset * 1000:.0f}", "retry-after": str(math.ceil(reset))})
        return admitted, headers

    def _file(self, content: bytes, purpose: str, name: str) -> dict:
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}  # fmt: skip

    def _create_batch(self, req: dict) -> dict:
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            job = {
                "id": batch_id, "object": "batch", "endpoint": req["endpoint"], "input_file_id": req["input_file_id"],
                "completion_window": req["completion_window"], "created_at": int(time.time()),
                "status": "validating", "metadata": req.get("metadata"), "_polls": 0,
            }  # fmt: skip
            self.batches[batch_id] = job
        return job

    def _retrieve_batch(self, batch_id: str) -> dict:
        job = self.batches[batch_id]
        if job["status"] in ("validating", "in_progress"):
            if job["_polls"] < self.batch_polls:
                job["_polls"] += 1
                job["status"] = "in_progress"
            else:
                self._run_batch(job)
        return job

    def _run_batch(self, job: dict) -> None:
        lines = [json.loads(r) for r in self.files[job["input_file_id"]].decode().splitlines() if r.strip()]
        ran = lines if self.batch_end == "completed" or self.batch_ran is None else lines[: self.batch_ran]
        out, errors = [], []
        for line in ran:
            body = line["body"]
            self.batch_lines.append(line)
            if self.batch_fails(body):
                errors.append({"id": f"req-{len(errors)}", "custom_id": line["custom_id"], "error": None,
                               "response": {"status_code": 500, "body": {"error": {"message": "scripted failure"}}}})  # fmt: skip
                continue
            d = self.default
            reply = d(body) if callable(d) else d
            out.append({"id": f"req-{len(out)}", "custom_id": line["custom_id"], "error": None,
                        "response": {"status_code": 200, "body": json.loads(completion_body(reply, body))}})  # fmt: skip
        if out:
            job["output_file_id"] = self._file(
                "\n".join(map(json.dumps, out)).encode(), "batch_output", "out.jsonl"
            )["id"]
        if errors:
            job["error_file_id"] = self._file(
                "\n".join(map(json.dumps, errors)).encode(), "batch_output", "err.jsonl"
            )["id"]
        job["status"] = self.batch_end

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
            # Headers and body go out in two writes; with Nagle's algorithm the second waits
            # for the client's delayed ACK, 40 ms a request.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1/batches/"):
                    job = fake._retrieve_batch(path.rsplit("/", 1)[1])
                    self._send(200, json.dumps({k: v for k, v in job.items() if not k.startswith("_")}), {})
                elif path == "/v1/batches":
                    data = [
                        {k: v for k, v in j.items() if not k.startswith("_")} for j in fake.batches.values()
                    ]
                    self._send(200, json.dumps({"object": "list", "data": data, "has_more": False}), {})
                elif path.startswith("/v1/files/") and path.endswith("/content"):
                    content = fake.files[path.split("/")[3]]
                    self._send(200, content.decode(), {})
                else:
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "fake"}]}), {})

            def do_POST(self) -> None:
                # A client that gave up on this request needs no answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._post()

            def _post(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                if path == "/v1/files":
                    content, purpose = _multipart_file(raw, self.headers.get("content-type", ""))
                    self._send(200, json.dumps(fake._file(content, purpose, "input.jsonl")), {})
                    return
                if path == "/v1/batches":
                    self._send(200, json.dumps({k: v for k, v in fake._create_batch(json.loads(raw)).items()
                                                if not k.startswith("_")}), {})  # fmt: skip
                    return
                req = json.loads(raw or b"{}")
                req["_auth"] = self.headers.get("authorization", "")
                admitted, limits = fake._admit()
                if not admitted:
                    if fake.on_limited is not None:
                        fake.on_limited(req)
                    body = json.dumps({"error": {"message": "rate limit reached", "type": "requests"}})
                    self._send(429, body, limits)
                    return
                reply = fake._next(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.reset:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = completion_body(reply, req)
                self._send(reply.status, body, {**limits, **reply.headers}, reply.trickle_s)

            def _send(self, status: int, body: str, headers: dict[str, str], trickle_s: float = 0.0) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    if not trickle_s:
                        self.wfile.write(data)
                    for i in range(len(data) if trickle_s else 0):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(trickle_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a scripted timeout): nothing to answer

        return Handler


def completion_body(reply: Reply, req: dict) -> str:
    """The body a reply is sent as: a chat completion, or the scripted error or raw body."""
    if reply.body is not None:
        return reply.body
    if reply.status != 200:
        return json.dumps({"error": {"message": f"scripted {reply.status}", "type": "x"}})
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or req.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": reply.finish_reason,
                    "message": {"role": "assistant", "content": reply.content, "refusal": reply.refusal},
                    "logprobs": _logprobs(reply, req),
                }
            ],
            "usage": {
                "prompt_tokens": reply.usage[0],
                "completion_tokens": reply.usage[1],
                "total_tokens": sum(reply.usage),
                "prompt_tokens_details": {"cached_tokens": reply.cached},
            },
        }
    )


def _multipart_file(raw: bytes, content_type: str) -> tuple[bytes, str]:
    """The uploaded file and its purpose from a multipart/form-data body (the Files endpoint)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    content, purpose = b"", ""
    for part in raw.split(b"--" + boundary):
        head, _, data = part.partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        if b'name="file"' in head:
            content = data
        elif b'name="purpose"' in head:
            purpose = data.decode()
    return content, purpose


def _logprobs(reply: Reply, req: dict) -> dict | None:
    if not reply.logprobs or not req.get("logprobs"):
        return None
    top = [
        {"token": tok, "logprob": math.log(p) if p > 0 else -100.0, "bytes": None}
        for tok, p in reply.logprobs[: req.get("top_logprobs") or 1]
    ]
    return {"content": [{**top[0], "top_logprobs": top}], "refusal": None}


def yes(p: float = 0.7) -> Reply:
    """A Yes/No answer whose first token is Yes with probability p (sampled: the likelier one)."""
    return Reply(content="Yes" if p >= 0.5 else "No", logprobs=[("Yes", p), ("No", 1 - p)], usage=(100, 1))


def is_question(req: dict) -> bool:
    return req["messages"][-1]["content"].rstrip().endswith("Answer Yes or No.")


def is_take_request(req: dict) -> bool:
    rf = req.get("response_format") or {}
    schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema") or {}
    return set(schema.get("properties", {})) == {"take"}


def question_of(req: dict) -> str:
    """The checklist question in a Yes/No request."""
    line = req["messages"][-1]["content"].rstrip().splitlines()[-2]
    return line.split(": ", 1)[1] if ": " in line else line


def tool_of(req: dict) -> str:
    for line in req["messages"][-1]["content"].splitlines():
        if line.startswith("name: "):
            return line[len("name: ") :]
    return ""


def _unpattern(raw: str) -> str:
    """The literal opening of a take pattern: '^I ship Gemini 2[.]5 because it [^...' -> 'I ship Gemini 2.5 because it'."""
    return re.sub(r"\[(.)\]", r"\1", raw[1:].split(" [^", 1)[0])


def card_word(req: dict) -> str:
    """A long word from the request's card description, so a default take names a fact from
    its card (as the take checks ask) rather than none."""
    # The card is in the first user message; a re-asked take has more messages after it.
    content = next((m["content"] for m in req["messages"] if "</tool_card>" in m["content"]), "")
    if "description:" not in content:
        return "card"
    description = content.split("description:", 1)[1].split("</tool_card>", 1)[0]
    return next((w.lower() for w in re.findall(r"[A-Za-z]{8,}", description)), "card")


def take_text(req: dict, text: str | None = None) -> Reply:
    """A take that opens as the request's pattern asks (or with the tool's name); by default it
    names a word of the card's description."""
    if text is None:
        text = f"names its {card_word(req)} from the card and judges it from my own angle."
    rf = req.get("response_format") or {}
    schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema") or {}
    pattern = schema.get("properties", {}).get("take", {}).get("pattern")
    opening = _unpattern(pattern) if pattern else tool_of(req)
    return Reply(content=json.dumps({"take": f"{opening} {text}".strip()}))


def standard_answer(req: dict) -> Reply:
    """Yes at 0.7 to every question, a plain take, or a holistic ship 80."""
    if is_question(req):
        return yes(0.7)
    if is_take_request(req):
        return take_text(req)
    named = f"names its {card_word(req)} from the card and judges it from my own angle."
    return Reply(content=take_json(take=named, lead=lead_of(req)))


def lead_of(req: dict) -> str:
    """The tool name the schema asks a take to open with, so default replies validate."""
    try:
        pattern = req["response_format"].get("schema") or req["response_format"]["json_schema"]["schema"]
        raw = pattern["anyOf"][0]["properties"]["take"].get("pattern", "")
    except (KeyError, TypeError):
        return ""
    return _unpattern(raw) if raw else ""


def persona_of(req: dict) -> str:
    user = req["messages"][1]["content"]
    for name in ("Builder", "Skeptic", "Futurist", "Creator", "Founder"):
        if f"You are the {name}" in user or f"The {name} asks" in user:
            return name.lower()
    return "?"


class PeakInFlight:
    """An answer that holds each request `delay_s` and records how many overlapped at most."""

    def __init__(self, answer: Callable[[dict], Reply], delay_s: float) -> None:
        self.answer, self.delay_s = answer, delay_s
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, req: dict) -> Reply:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.delay_s)
        with self._lock:
            self.now -= 1
        return self.answer(req)


class LeakingTakes:
    """Standard answers, except that each seat's first takes give away a secret: the first
    holds `pieces[0]`, the next `pieces[1]`, and so on; after those, a good take."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, req: dict) -> Reply:
        if not is_take_request(req):
            return standard_answer(req)
        seat = json.dumps(req["messages"][:2])  # the same for every attempt at one take
        with self._lock:
            n = self.seen[seat] = self.seen.get(seat, 0) + 1
        if n <= len(self.pieces):
            return take_text(req, f"is fine, and my key is {self.pieces[n - 1]} for anyone who asks.")
        return take_text(req)
