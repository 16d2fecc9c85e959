"""A server that sends no usage (some OpenAI-compatible servers do not): through run.py with
`model=openai`, the ledger says the counts are missing instead of showing 0, and with
`model.tokenizer` the tokens are counted with the tokenizer. The server is a small loopback
stand-in that answers every chat completion with one of a few lines and no `usage`."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.models import loading
from tests.conftest import run_py as salon

LINES = ["I grew up near the sea, and I still swim there every morning before work.",
         "My sister runs a bakery, so I help her on weekends and bring bread to friends.",
         "Lately I have been reading about old trains, and I want to ride one next summer.",
         "I moved here last spring for a job at the library, and I like the quiet streets.",
         "On Sundays I play chess in the park with my neighbour, who always beats me."]


class NoUsage(BaseHTTPRequestHandler):
    lines: Iterator[str] = itertools.cycle(LINES)
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            text = next(self.lines)
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "default",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NoUsage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def run(server: str, folder: Path, *extra: str) -> tuple[list[dict], str]:
    result = salon("experiment=smoke", "model=openai", f"model.base_url={server}",
                   "simulation.progress=false", f"hydra.run.dir={folder}", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    turns = [t for episode in episodes for t in episode["turns"]]
    return turns, (folder / "report.md").read_text()


def test_missing_usage_is_reported_missing_not_zero(server: str, tmp_path: Path) -> None:
    turns, report = run(server, tmp_path / "run")
    assert turns and all(t["uncounted"] >= 1 and t["prompt_tokens"] == 0 for t in turns)
    calls = sum(t["uncounted"] for t in turns)
    assert f"| all | 0 + missing for {calls} calls | 0 + missing for {calls} calls |" in report
    assert f"The counts are missing for {calls} model calls" in report


def test_model_tokenizer_counts_what_the_server_did_not(server: str, cache_dir: Path, tmp_path: Path) -> None:
    folder = loading.cached_folder(loading.embedded_source(), cache_dir).folder
    turns, report = run(server, tmp_path / "run", f"model.tokenizer={folder}")
    assert turns and all(t["uncounted"] == 0 and t["prompt_tokens"] > 100 for t in turns)
    assert all(t["completion_tokens"] > 10 for t in turns)  # the lines are 15-20 tokens (x candidates)
    assert "missing" not in report.split("## Ledger")[1]
