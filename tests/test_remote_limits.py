"""`model=openai` (a server given by URL) through run.py: at most `model.max_concurrency` requests
are in flight over every episode's thread, and a server slower than `model.timeout` is one line
(exit 1) that keeps what finished. The server is a small loopback stand-in that answers each chat
completion after a delay and counts the requests it holds at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_py as salon
from tests.test_usage_counts import LINES


class Slow(BaseHTTPRequestHandler):
    delay = 0.3
    lock = threading.Lock()
    in_flight = 0
    most = 0
    served = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        time.sleep(cls.delay)
        with cls.lock:
            cls.in_flight -= 1
            cls.served += 1
            text = LINES[cls.served % len(LINES)]
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "default",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 16, "total_tokens": 116}})
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            return

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture()
def slow() -> Iterator[tuple[str, type[Slow]]]:
    handler = type("SlowServer", (Slow,), {"lock": threading.Lock()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()


def run(url: str, folder: Path, *extra: str):
    return salon("experiment=smoke", "model=openai", f"model.base_url={url}",
                 "conversation.schedule=independent", "simulation.progress=false",
                 f"hydra.run.dir={folder}", *extra)


def test_requests_in_flight_stay_within_max_concurrency_over_all_episodes(slow, tmp_path: Path) -> None:
    url, server = slow
    result = run(url, tmp_path / "run", "model.max_concurrency=2", "society.size=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert server.served >= 8
    assert server.most == 2, f"{server.most} requests were in flight at once, model.max_concurrency=2"


def test_a_server_slower_than_the_timeout_is_one_line_and_exit_1(slow, tmp_path: Path) -> None:
    url, server = slow
    server.delay = 3.0
    result = run(url, tmp_path / "run", "model.timeout=0.2")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("salon: error")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "model.timeout=0.2" in lines[0] and "resume=" in lines[0], lines[0]
