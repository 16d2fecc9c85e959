"""The bad-input catalogue (issue 13): every class of bad input a user can hand Salon, given
through `python run.py`, stops with ONE line on stderr (`salon: error: ...`) naming the key or
file and what is allowed, exit code 2, no traceback, and nothing written: no run folder, no
model cache, no registry version, no chat memory, the input files byte for byte as they were.
Bad requests to `task=serve`'s OpenAI-compatible API are a 4xx with OpenAI's error body, never
a 5xx, and store nothing.

Each case has its own folder (inputs, run folder, registry, cache), snapshotted before and
after. The starts are warm (tests/warm_starts.py: run.py as `__main__` in the fork of a process
that has imported what it imports, 0.3 s instead of 1-5 s); one case is also started the
ordinary way to show the two agree."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.conftest import PYTHON, ROOT, cold_run_py, run_py

SHIPPED_BANK = ROOT / "agents" / "data" / "bank.jsonl"
COMMA_TEXT = "I lost my job, and I feel lost"
FAST = 15.0  # seconds for one start: far below a model load
TIMEOUT = 60.0  # for one start: far above a check that fails, far below a run that does work
Setup = Callable[[Path], None]


class Case(NamedTuple):
    id: str
    arguments: tuple[str, ...]  # "{folder}" is the case's own folder
    named: tuple[str, ...]  # what the error line must contain
    setup: Setup | None = None


# --- inputs, written into the case's folder -------------------------------------------------


def bank(edit: Callable[[list[dict[str, Any]]], list[str]]) -> Setup:
    """A bank.jsonl made from the shipped bank's first four records, as ``edit`` changes them."""
    def write(folder: Path) -> None:
        records = [json.loads(line) for line in SHIPPED_BANK.read_text(encoding="utf-8").splitlines()[:4]]
        lines = edit(records)
        (folder / "bank.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return write


def changed(index: int, **fields: Any) -> Callable[[list[dict[str, Any]]], list[str]]:
    def edit(records: list[dict[str, Any]]) -> list[str]:
        records[index] = {k: v for k, v in {**records[index], **fields}.items() if v is not None}
        return [json.dumps(r) for r in records]
    return edit


def file(name: str, content: bytes) -> Setup:
    def write(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return write


def earlier_run(config: str, damage: bytes = b"") -> Setup:
    """`folder/earlier`: a stored run (characters, one episode in SQLite, the graph) with this
    config.yaml, its episodes.sqlite overwritten from byte 0 with ``damage``."""
    def write(folder: Path) -> None:
        from tests.test_serve_api import make_run

        run = make_run(folder / "earlier")
        (run / "config.yaml").write_text(config, encoding="utf-8")
        if damage:
            with (run / "episodes.sqlite").open("r+b") as database:
                database.write(damage)
    return write


def registered(name: str, kind: str, tamper: Callable[[Path], None]) -> Setup:
    """`folder/registry` holding ``name``:1, then ``tamper`` applied to its version folder."""
    def write(folder: Path) -> None:
        from tests.test_registry import CARD, adapter_folder
        from training.registry import ModelRegistry

        trained = adapter_folder(folder / "trained")
        tamper(ModelRegistry(folder / "registry").register(name, kind, trained, CARD).path)
    return write


def questions(folder: Path) -> None:
    (folder / "questions.json").write_text(json.dumps(
        [{"topic_id": "topic-1", "topic": "work", "question": "What do you do all day?"}]), encoding="utf-8")


SALON_CONFIG = "seed: 0\ntask:\n  _target_: environment.tasks.simulate.run\n  _partial_: true\n"
GARBAGE = b"\xde\xad\xbe\xef" * 256
PICKLE = b"\x80\x04K\x01."  # pickle protocol 4 for the integer 1
BANK = "society.bank={folder}/bank.jsonl"
EPISODES = "input={folder}/episodes.jsonl"

CONFIG_CASES = [  # one bad value per config group, plus an unknown key, option and a wrong type
    Case("society", ("society.size=0",), ("society.size=0", "a whole number >= 2")),
    Case("society-type", ("society.size=abc",), ("society.size='abc'", "a whole number")),
    Case("conversation", ("conversation.max_turns=0",), ("conversation.max_turns=0", "from 1 to 200")),
    Case("critic", ("critic.dimensions.naturalness.weight=-1",),
         ("critic.dimensions.naturalness.weight=-1", ">= 0")),
    Case("memory", ("memory.store.candidates=0",), ("memory.store.candidates=0", ">= 1")),
    Case("memory-setting", ("memory.seed_importance=2",), ("memory.seed_importance=2", "from 0 to 1")),
    Case("model", ("model.temperature=-1",), ("model.temperature=-1", "greater than or equal to 0")),
    Case("matching", ("matching=homophily", "matching.exact_limit=-3"), ("matching.exact_limit=-3", ">= 0")),
    Case("simulation", ("simulation.rounds=0",), ("simulation.rounds=0", ">= 1")),
    Case("simulation-type", ("simulation.progress=maybe",), ("simulation.progress='maybe'", "true or false")),
    Case("training", ("task=train", "training.runs=[x]", "training.lora.rank=0"), ("training.lora.rank=0",)),
    Case("training-runs", ("task=train", "training.runs=[{folder}/nosuch]"),
         ("training.runs", "{folder}/nosuch is not a run folder")),
    Case("loop", ("task=loop", "loop.generations=0"), ("loop.generations=0", ">= 1")),
    Case("serve", ("task=serve", "serve.port=99999"), ("serve.port=99999", "from 0 to 65535")),
    Case("serve-type", ("task=serve", "serve.remember=maybe"), ("serve.remember='maybe'", "true or false")),
    Case("chat", ("task=chat", "character=intj-001", "chat.max_message_chars=0"),
         ("chat.max_message_chars=0", ">= 1")),
    Case("interview", ("task=interview", "character=intj-001", "interview.questions={folder}/questions.json",
                       "interview.mode=bogus"), ("interview.mode='bogus'", "auto, single or multi"),
         questions),
    Case("bank", ("task=bank", "bank.per_type=0"), ("bank.per_type=0", ">= 1")),
    Case("bank-retries", ("task=bank", "bank.retries=-1"), ("bank.retries=-1", ">= 0")),
    Case("eval", ("task=evaluate", "eval.split=bogus"), ("eval.split='bogus'", "dev or test")),
    Case("eval-count", ("task=evaluate", "eval.dialogues=0"), ("eval.dialogues=0", ">= 1, or null")),
    Case("embedder", ("embedder.path={folder}/nope",),
         ("embedder.path='{folder}/nope'", "sentence-transformers")),
    # flags and settings that once passed the check and failed (or ran) after the run folder was made
    Case("embedder-batch", ("embedder.batch_size=0",), ("embedder.batch_size=0", ">= 1")),
    Case("embedder-device", ("embedder.device=quantum",), ("embedder.device='quantum'", "cuda:<n>")),
    Case("embedder-autocast", ("embedder.autocast=maybe",), ("embedder.autocast='maybe'", "auto, true")),
    Case("model-device", ("model.device=quantum",), ("model.device='quantum'", "cpu, cuda")),
    Case("model-dtype", ("model.dtype=bogus",), ("model.dtype='bogus'", "bfloat16, float16, float32")),
    Case("forgetting-flag", ("memory.store.forgetting.enabled=maybe",),
         ("memory.store.forgetting.enabled='maybe'", "true or false")),
    Case("society-flag", ("society.use_scenes=maybe",), ("society.use_scenes='maybe'", "true or false")),
    Case("conversation-flag", ("conversation.stop_on_goodbye=maybe",),
         ("conversation.stop_on_goodbye='maybe'", "true or false")),
    Case("loop-flag", ("task=loop", "loop.cumulative=maybe"), ("loop.cumulative='maybe'", "true or false")),
    Case("estimate", ("task=estimate", "estimate.characters=1"), ("estimate.characters=1", "from 2 to")),
    Case("unknown-key", ("society.sizee=3",), ("society.sizee is not a known key", "size, support_share")),
    Case("unknown-option", ("matching=nope",), ("matching=nope", "random", "round_robin")),
]

BANK_CASES = [  # society.bank=<file>
    Case("bank-not-json", (BANK,), ("{folder}/bank.jsonl", "record 3", "not valid JSON"),
         bank(lambda records: [json.dumps(records[0]), json.dumps(records[1]), '{"id": "x-1", "name": '])),
    Case("bank-empty", (BANK,), ("{folder}/bank.jsonl", "no records"), file("bank.jsonl", b"")),
    Case("bank-missing-field", (BANK,), ("{folder}/bank.jsonl", "record 3", "field 'facts'", "missing"),
         bank(changed(2, facts=None))),
    Case("bank-mistyped-field", (BANK,), ("record 3", "field 'age'", "'forty'", "whole number"),
         bank(changed(2, age="forty"))),
    Case("bank-duplicate-id", (BANK,), ("record 4", "field 'id'", "already used by record 1"),
         bank(changed(3, id="estj-001"))),
    Case("bank-unknown-mbti", (BANK,), ("record 3", "field 'mbti'", "'XYZW'", "16 MBTI types"),
         bank(changed(2, mbti="XYZW"))),
    Case("bank-not-found", ("society.bank={folder}/nosuch.jsonl",), ("{folder}/nosuch.jsonl", "not found")),
]

EPISODE_CASES = [  # task=score input=<episodes.jsonl>
    Case("episodes-not-json", ("task=score", EPISODES), ("{folder}/episodes.jsonl, line 1", "not valid JSON"),
         file("episodes.jsonl", b"hello there\n")),
    Case("episodes-missing-field", ("task=score", EPISODES), ("line 1", "missing field 'participants'"),
         file("episodes.jsonl", b'{"id": "r000-e000", "round": 0}\n')),
    Case("episodes-empty", ("task=score", EPISODES), ("{folder}/episodes.jsonl", "holds no episodes"),
         file("episodes.jsonl", b"\n")),
    Case("episodes-not-text", ("task=score", EPISODES), ("{folder}/episodes.jsonl", "UTF-8"),
         file("episodes.jsonl", b"\xff\xfe\x00garbage")),
]

RESUME_CASES = [  # resume=<folder>
    Case("resume-not-a-run", ("resume={folder}/earlier",), ("resume={folder}/earlier", "missing config.yaml"),
         file("earlier/notes.txt", b"not a run\n")),
    Case("resume-foreign-config", ("resume={folder}/earlier",), ("resume=", "not a Salon run's config"),
         earlier_run("seed: 0\n")),
    Case("resume-corrupt-database", ("resume={folder}/earlier",),
         ("resume={folder}/earlier", "episodes.sqlite is damaged", "file is not a database"),
         earlier_run(SALON_CONFIG, GARBAGE)),
]

REGISTRY_CASES = [  # registry references and registered folders
    Case("registry-unknown", ("model.adapter=nosuch:1",), ("model.adapter=nosuch:1", "no model 'nosuch'")),
    Case("registry-digest", ("model.adapter=chat:1",),
         ("model.adapter=chat:1", "does not match its card", "changed since registered: adapter_config.json"),
         registered("chat", "adapter", lambda path: (path / "adapter_config.json").write_text("{}"))),
    Case("registry-pickle-bin", ("model.adapter=chat",),
         ("model.adapter=chat", "files not registered: adapter_model.bin", "not loaded"),
         registered("chat", "adapter", lambda path: (path / "adapter_model.bin").write_bytes(PICKLE))),
    Case("registry-pickle-pt", ("memory.selector=memory-selector",),
         ("memory.selector=memory-selector", "files not registered: optimizer.pt"),
         registered("memory-selector", "scorer", lambda path: (path / "optimizer.pt").write_bytes(PICKLE))),
]

FREE_TEXT_CASES = [  # free text on the command line, as a shell hands it over without Hydra quoting
    Case("text-with-comma", ("task=match", f"seeker={COMMA_TEXT}"),
         ("seeker=", "reads as a sweep", f"""'seeker="{COMMA_TEXT}"'""")),
    Case("text-with-quote", ("task=match", "seeker=I'm lost"),
         ("seeker", "Hydra cannot read", """"seeker=\\"I'm lost\\"\"""")),
]

CASES = CONFIG_CASES + BANK_CASES + EPISODE_CASES + RESUME_CASES + REGISTRY_CASES + FREE_TEXT_CASES
# the quoting the errors suggest, as argv holds it once the shell has removed the outer quotes
QUOTED = {f'seeker="{COMMA_TEXT}"': f"seeker: {COMMA_TEXT}", """seeker="I'm lost\"""": "seeker: I'm lost"}


# --- the starts -----------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (its sha256) and folder under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "folder" for p in sorted(folder.rglob("*"))}


def arguments(case: Case, folder: Path) -> list[str]:
    """The case's arguments; a run folder, registry and chat memory of its own (a resumed run
    takes none: it keeps its saved config and writes into its own folder)."""
    given = [a.format(folder=folder) for a in case.arguments]
    if any(a.startswith("resume=") for a in given):
        return given
    return [*given, f"hydra.run.dir={folder / 'run'}", f"paths.registry_root={folder / 'registry'}",
            f"paths.chat_memory={folder / 'chats'}"]


class Start(NamedTuple):
    result: dict[str, Any]
    folder: Path
    before: dict[str, str]


@pytest.fixture(scope="module")
def starts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Start]:
    """Every case (and every quoted form) started once, through run.py, in one batch."""
    root = tmp_path_factory.mktemp("bad-input")
    folders = {case.id: root / case.id for case in CASES}
    results, befores = [], {}
    for case in CASES:
        folders[case.id].mkdir()
        if case.setup is not None:
            case.setup(folders[case.id])
        befores[case.id] = snapshot(folders[case.id])
        cache = {"SALON_CACHE": str(folders[case.id] / "cache")}
        results.append(started(arguments(case, folders[case.id]), cache))
    results += [started(["task=match", argument, "--cfg", "job"]) for argument in QUOTED]
    labels = [case.id for case in CASES] + list(QUOTED)
    folder_of = {**dict.fromkeys(QUOTED, root), **folders}
    return {label: Start(result, folder_of[label], befores.get(label, {}))
            for label, result in zip(labels, results, strict=True)}


def started(given: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """run.py with ``given``: its exit code (None: still running after TIMEOUT, killed), output, seconds."""
    began = time.perf_counter()
    try:
        done = run_py(*given, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "stdout": "", "stderr": "", "seconds": TIMEOUT}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
            "seconds": round(time.perf_counter() - began, 2)}


def one_line(result: dict[str, Any]) -> str:
    """The one `salon: error:` line of a start that exited with code 2 and nothing else."""
    assert result["returncode"] is not None, "it ran past the timeout: it started work instead of stopping"
    assert result["returncode"] == 2, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"] + result["stdout"], result["stderr"][-3000:]
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("salon: error: "), result["stderr"][-3000:]
    assert result["stdout"] == ""
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_exit_code_2_and_writes_nothing(starts: dict[str, Start], case: Case) -> None:
    result, folder, before = starts[case.id]
    line = one_line(result)
    for word in case.named:
        assert word.format(folder=folder) in line, f"{word.format(folder=folder)!r} not named in: {line}"
    assert result["seconds"] < FAST, f"took {result['seconds']} s: did a model load?"
    assert snapshot(folder) == before, "something was written: a run folder, cache, registry version or input"


@pytest.mark.parametrize("argument", list(QUOTED))
def test_the_quoting_the_errors_suggest_reads_as_one_text(starts: dict[str, Start], argument: str) -> None:
    result = starts[argument].result
    assert result["returncode"] == 0, result["stderr"][-2000:]
    assert QUOTED[argument] in result["stdout"].splitlines()


def test_a_warm_start_says_what_an_ordinary_start_says(starts: dict[str, Start]) -> None:
    case = CONFIG_CASES[0]
    start = starts[case.id]
    ordinary = cold_run_py(*arguments(case, start.folder), timeout=120)
    assert (ordinary.returncode, ordinary.stderr, ordinary.stdout) == (
        start.result["returncode"], start.result["stderr"], start.result["stdout"])
    assert snapshot(start.folder) == start.before


# --- the API of task=serve ------------------------------------------------------------------


class Server(NamedTuple):
    url: str
    character: str
    process: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> str:
    """The first character the server lists, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"task=serve exited: {log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{url}/v1/models", timeout=5).json()["data"][0]["id"]
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"task=serve did not answer in {timeout} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python run.py task=serve run=<a small stored run>` on a free loopback port."""
    from tests.test_serve_api import make_run

    folder = tmp_path_factory.mktemp("serve")
    url, log = f"http://127.0.0.1:{free_port()}", folder / "server.log"
    command = [PYTHON, "run.py", "task=serve", f"run={make_run(folder / 'run')}",
               f"serve.port={url.rsplit(':')[-1]}", f"hydra.run.dir={folder / 'hydra'}",
               f"paths.registry_root={folder / 'registry'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SALON_CACHE": str(folder / "cache")}
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield Server(url, wait_until_up(url, process, log), process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


HI = [{"role": "user", "content": "hi"}]
BAD_REQUESTS = [  # (what, body: bytes as sent or fields over a good request, status, code, param)
    ("malformed JSON", b'{"model": "character/x", ', 400, "invalid_json", None),
    ("not an object", b"[1, 2]", 400, "invalid_json", None),
    ("unknown character", {"model": "character/nobody"}, 404, "model_not_found", "model"),
    ("unknown model", {"model": "gpt-4"}, 404, "model_not_found", "model"),
    ("no messages", {"messages": None}, 400, "invalid_value", "messages"),
    ("empty messages", {"messages": []}, 400, "invalid_value", "messages"),
    ("unknown role", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value",
     "messages.0.role"),
    ("last message not the user's", {"messages": [*HI, {"role": "assistant", "content": "hi"}]}, 400,
     "invalid_value", "messages"),
    ("huge max_tokens", {"max_tokens": 10**12}, 400, "invalid_value", "max_tokens"),
    ("100 KB content", {"messages": [{"role": "user", "content": "x" * 100_000}]}, 400, "message_too_long",
     "messages.0.content"),
    ("blank content", {"messages": [{"role": "user", "content": "  \n "}]}, 400, "empty_message",
     "messages.0.content"),
    ("control characters only", {"messages": [{"role": "user", "content": "\u0000\u0007 \u001b"}]}, 400,
     "empty_message", "messages.0.content"),
]


def chat_memories(server: Server) -> list[dict[str, Any]]:
    character = server.character.removeprefix("character/")
    stored = httpx.get(f"{server.url}/api/memories/{character}", timeout=10).json()
    return [m for m in stored if m["kind"] == "chat"]


@pytest.mark.parametrize(("what", "body", "status", "code", "param"), BAD_REQUESTS,
                         ids=[request[0] for request in BAD_REQUESTS])
def test_a_bad_api_request_is_a_4xx_with_openais_error_body(server: Server, what: str, body: bytes | dict,
                                                          status: int, code: str, param: str | None) -> None:
    if isinstance(body, dict):
        fields = {"model": server.character, "messages": HI, **body}
        body = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert (error["code"], error["param"]) == (code, param) and error["message"].strip()
    assert chat_memories(server) == []


def test_the_server_survived_every_bad_request(server: Server) -> None:
    assert server.process.poll() is None, server.log.read_text()[-3000:]
    assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 200
    assert "Traceback" not in server.log.read_text()
