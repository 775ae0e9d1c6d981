"""Run the fake OpenAI server as a process: valid takes after a delay, each request logged."""

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fakeopenai import FakeOpenAI, Reply, lead_of, persona_of, take_json  # noqa: E402

delay, log, port_file = float(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
lock = threading.Lock()


def answer(req: dict) -> Reply:
    with lock, log.open("a") as f:
        f.write(json.dumps({"tool": lead_of(req), "persona": persona_of(req), "t": time.time()}) + "\n")
    return Reply(content=take_json("ship", 70, lead=lead_of(req)), delay_s=delay)


with FakeOpenAI(default=answer) as fake:
    port_file.write_text(str(fake.server.server_address[1]))
    while True:
        time.sleep(1)
