"""Run the fake OpenAI server as a process: valid answers after a delay, each request logged.

Usage: fake_server_main.py DELAY_S LOG PORT_FILE [FAULT_RATE] [RATE_LIMIT]. With a fault rate,
that share of requests gets a 503, a 500 that echoes the caller's key, a reset connection, broken
JSON or an HTML page instead. With a rate limit (requests/s), requests beyond it get a 429 with
Retry-After and the x-ratelimit-* headers, logged with "status": 429.
"""

import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fakeopenai import (  # noqa: E402
    FakeOpenAI,
    Reply,
    is_question,
    is_take_request,
    lead_of,
    persona_of,
    standard_answer,
    take_json,
    tool_of,
)

delay, log, port_file = float(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
fault_rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
rate_limit = int(sys.argv[5]) if len(sys.argv) > 5 else 0
lock = threading.Lock()
rng = random.Random(7)


def fault(req: dict) -> Reply:
    kind = rng.choice(["503", "500-echo", "reset", "broken", "html"])
    if kind == "503":
        return Reply(status=503)
    if kind == "500-echo":
        key = req.get("_auth", "").removeprefix("Bearer ")
        return Reply(status=500, body=json.dumps({"error": {"message": "x" * 400 + f" bad key {key}"}}))
    if kind == "reset":
        return Reply(reset=True)
    if kind == "broken":
        return Reply(content='{"verdict": "ship", "sco')
    return Reply(body="<html><body>502 Bad Gateway</body></html>")


def answer(req: dict) -> Reply:
    with lock:
        with log.open("a") as f:
            row = {"tool": lead_of(req) or tool_of(req), "persona": persona_of(req), "t": time.time()}
            f.write(json.dumps(row) + "\n")
        faulty = rng.random() < fault_rate
    if faulty:
        return fault(req)
    if is_question(req) or is_take_request(req):
        reply = standard_answer(req)
        reply.delay_s = delay
        return reply
    return Reply(content=take_json("ship", 70, lead=lead_of(req)), delay_s=delay)


def limited(req: dict) -> None:
    with lock, log.open("a") as f:
        f.write(json.dumps({"tool": lead_of(req) or tool_of(req), "persona": persona_of(req),
                            "t": time.time(), "status": 429}) + "\n")  # fmt: skip


with FakeOpenAI(default=answer) as fake:
    if rate_limit:
        fake.rate_limit, fake.on_limited = rate_limit, limited
    port_file.write_text(str(fake.server.server_address[1]))
    while True:
        time.sleep(1)
