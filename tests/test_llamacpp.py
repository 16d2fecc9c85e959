"""model=llamacpp through run.py: a real llama-server (built by `make llama-server`) on
127.0.0.1, started and stopped by Salon; no server outlives its run, even after SIGKILL.
`.ci/run` builds the server and sets SALON_REQUIRE_LLAMA_SERVER, so in CI these never skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agents.models.served import auto_weight_type
from agents.models.servers import cpu_kind, llama_cpp_home, llama_server_path
from tests.conftest import PYTHON, ROOT, salon_env, warm_starts
from tests.conftest import run_py as salon

BINARY = llama_server_path()
pytestmark = pytest.mark.skipif(not BINARY.is_file() and not os.environ.get("SALON_REQUIRE_LLAMA_SERVER"),
                                reason="llama-server is not built: make llama-server")


def servers(tag: str = "") -> list[int]:
    """Pids of running llama-server processes of this machine's build; with ``tag``, only those
    started by a run whose environment carries SALON_TEST_TAG=``tag`` (other tests' servers,
    pytest-xdist's other worker included, do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == str(BINARY) and (not tag or tagged(entry, tag)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def tagged(process: Path, tag: str) -> bool:
    return f"SALON_TEST_TAG={tag}".encode() in (process / "environ").read_bytes().split(b"\0")


def orphaned_servers() -> list[int]:
    """llama-servers whose parent has gone (adopted by init): what a finished run would leak.
    Servers of other tests running beside this one (pytest-xdist) still have their parent."""
    found = []
    for pid in servers():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == 1:
            found.append(pid)
    return found


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(t) for t in text]
    return found


def test_the_build_script_and_salon_agree_on_where_the_server_is() -> None:
    shown = subprocess.run(["bash", "-c", "grep -m1 -E '^(flags|Features)' /proc/cpuinfo | tr ' ' '\\n' "
                            "| grep -x -E 'avx2|avx512f|avx512_bf16|avx512_vnni|amx_tile|fma|f16c|asimd|sve' "
                            "| sort -u | tr '\\n' '-' | sha256sum | cut -c1-10"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == cpu_kind()
    assert llama_cpp_home() / "bin" / "llama-server" == BINARY
    assert f"-{cpu_kind()}" in str(BINARY) and (ROOT / "scripts" / "build_llama_server.sh").is_file()


def test_a_default_simulation_runs_on_llama_server_and_stops_it(tmp_path: Path) -> None:
    before = orphaned_servers()
    # two rounds: the server started by round 0's episode threads must outlive them
    result = salon("model=llamacpp", "experiment=smoke", "conversation.max_turns=4", "simulation.rounds=2",
                   "simulation.progress=false", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HTTP Request" not in result.stdout + result.stderr  # the client libraries' per-request log
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 4
    turns = [t for e in episodes for t in e["turns"]]
    assert len(turns) >= 4 and all(t["text"].strip() for t in turns if not t.get("error"))
    assert all(t["model"] == "SmolLM2-135M-Instruct" for t in turns)
    assert sum(len(t.get("candidates") or ()) > 1 for t in turns) >= 1  # best of n, n choices per request
    report = (tmp_path / "report.md").read_text()
    assert "llama-server" in report and "prompt cache" in report
    kind = auto_weight_type()  # model.quantize=auto: the embedded Q4_1 GGUF as BF16 or F32
    assert f"weights as {kind}" in report
    cache = Path(os.environ.get("SALON_CACHE") or Path.home() / ".cache" / "salon")
    made = list((cache / "llama.cpp-models").glob(f"*-{kind}.gguf"))
    assert made and made[0].read_bytes()[:4] == b"GGUF"
    assert orphaned_servers() == before


def test_model_quantize_null_serves_the_gguf_as_shipped(tmp_path: Path) -> None:
    result = salon("model=llamacpp", "model.quantize=null", "experiment=smoke", "conversation.max_turns=2",
                   "model.max_new_tokens=24", "simulation.progress=false", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    assert "llama-server" in report and "weights as" not in report
    assert len((tmp_path / "episodes.jsonl").read_text().splitlines()) == 2


def test_no_server_outlives_a_killed_run(tmp_path: Path) -> None:
    arguments = ["model=llamacpp", "experiment=smoke", "simulation.rounds=20", "simulation.progress=false",
                 f"hydra.run.dir={tmp_path / 'run'}"]
    process = warm_starts().popen(ROOT / "run.py", arguments, salon_env())
    deadline, server = time.monotonic() + 180, []
    while not server and process.poll() is None and time.monotonic() < deadline:
        server = [p for p in children(process.pid) if p in servers()]
        time.sleep(0.2)
    assert server, process.output()[1][-2000:]
    process.send_signal(signal.SIGKILL)  # the run alone, not its group: its server is left to itself
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while server[0] in servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server[0] not in servers()


def test_a_missing_server_is_one_line_before_any_work(tmp_path: Path) -> None:
    result = salon("model=llamacpp", "model.binary=/nowhere/llama-server", "experiment=smoke",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "salon: error: model.binary='/nowhere/llama-server' is invalid: no llama-server at "
        "/nowhere/llama-server: build it with `make llama-server`"]
    assert not (tmp_path / "run").exists()


def test_a_server_slower_than_its_timeout_is_one_line_and_the_server_stops(tmp_path: Path) -> None:
    tag = f"timeout-{os.getpid()}-{time.monotonic_ns()}"
    result = salon("model=llamacpp", "model.timeout=0.01", "experiment=smoke",
                   f"hydra.run.dir={tmp_path / 'run'}", env={"SALON_TEST_TAG": tag})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("salon: error:")]
    assert len(errors) == 1 and "did not answer a request within model.timeout=0.01 s" in errors[0]
    assert f"resume={tmp_path / 'run'} continues" in errors[0]
    assert servers(tag) == []  # its own server is gone (a server of a test beside it may run)


# (memory, question) pairs whose greedy reply copies the memory with DRY off: how much depends on
# the CPU kind's llama.cpp build (the hiking one 8+ words on the avx512_bf16 Zen 4 of 2026-12-02;
# the farm one 17 words on an AVX2-only Zen 3; the farm one 7 words on an avx512_bf16 Zen 4 on
# 2026-12-07), so the control asks that at least one of them copies 6 words or more; the weights
# are pinned to Q8_0, the type these pairs were found with (with auto's F32 it failed on Zen 3)
COPY_BAIT = (("I love hiking in the mountains with my dog every single weekend, rain or shine.",
              "What do you do every weekend?"),
             ("I grew up on a small farm in Iowa with three brothers and a goat named Pickles.",
              "Where did you grow up?"))


def served_greedy_replies(setting: str) -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from langchain_core.messages import HumanMessage, SystemMessage

    from agents.models.blocking import Avoid

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        overrides = ["model=llamacpp", "model.temperature=0", "model.quantize=Q8_0", setting]
        cfg = compose("config", overrides=overrides)
    model = instantiate(cfg.model)
    replies = []
    try:
        for memory, question in COPY_BAIT:
            persona = f"You are Uma.\nAbout you:\n- I keep bees.\nThings you remember:\n- {memory}"
            talk = [SystemMessage(persona), HumanMessage(question)]
            avoid = Avoid(texts=(memory,), allowed=("I keep bees.",))
            replies.append(model.complete([talk], seed=1, candidates=1, avoid=[avoid])[0].text)
        return replies
    finally:
        model.close()


def test_dry_keeps_a_served_reply_from_copying_what_it_must_not() -> None:
    """`model.dry_multiplier` through Hydra's compose on a real llama-server: greedy, the model
    copies a recalled memory word for word when DRY is off (6 words or more in a row), and with
    the default copies at most 4: DRY allows 3 tokens, the 4th costs `dry_multiplier` of logit and
    each further one 1.75x more (the farm memory: 17 words off, "I grew up on" with the default)."""
    from agents.degeneration import longest_shared_run, words

    replies = {setting: served_greedy_replies(setting)
               for setting in ("model.dry_multiplier=0", "model.temperature=0")}
    shared = {setting: [longest_shared_run(words(text), words(memory))
                        for text, (memory, _) in zip(texts, COPY_BAIT, strict=True)]
              for setting, texts in replies.items()}
    assert max(shared["model.dry_multiplier=0"]) >= 6, (shared, replies)  # the control: it copies
    assert max(shared["model.temperature=0"]) <= 4, (shared, replies)


def test_the_engine_benchmark_runs_end_to_end_and_replays_the_same_requests() -> None:
    """`python -m bench.engine` at its smallest (one episode of two turns, the served cases):
    it broke twice unseen when the served request's signature changed. Timings are not checked."""
    command = [PYTHON, "-m", "bench.engine", "--skip-local", "--episodes", "1", "--turns", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "engine" and line["llamacpp"]["episodes"] == 1
    assert line["llamacpp"]["completion_tokens"] > 0 and line["raw"]["completion_tokens"] > 0
    served, replayed = line["llamacpp"]["prompt_tokens"], line["raw"]["prompt_tokens"]
    assert abs(served - replayed) <= 0.01 * served, line  # the same requests
    assert not orphaned_servers()
