"""`python run.py` with bad input: exit code 2, one line on stderr naming the key, no traceback,
and before any model loads (fast, no model cache written, no run folder made)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_py

FAST = 15.0  # seconds: far below a model load, with room for a busy 2-core machine
SHIPPED_BANK = ROOT / "agents" / "data" / "bank.jsonl"


def run_salon(tmp_path: Path, *arguments: str, timeout: float = 60
              ) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = run_py(f"hydra.run.dir={tmp_path / 'run'}", *arguments, timeout=timeout,
                    env={"SALON_CACHE": str(tmp_path / "cache")})
    return result, time.perf_counter() - started


def assert_usage_error(tmp_path: Path, result: subprocess.CompletedProcess, seconds: float,
                       *named: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("salon: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for word in named:
        assert word in lines[0], f"{word!r} not named in: {lines[0]}"
    assert seconds < FAST, f"took {seconds:.1f} s: did a model load?"
    assert not (tmp_path / "cache").exists(), "the chat model was loaded (its cache was written)"
    assert not (tmp_path / "run").exists(), "a run folder was made for a run that cannot start"
    return lines[0]


@pytest.mark.parametrize("override, key", [
    ("society.size=0", "society.size=0"),
    ("simulation.rounds=-1", "simulation.rounds=-1"),
    ("matching=nope", "matching=nope"),
    ("society.sizee=3", "society.sizee"),
    ("conversation.min_turns=9", "conversation.min_turns=9"),
    ("society.size=65", "society.size=65"),
    ("model.temperature=-1", "model.temperature"),
    # every config group that builds an object reports its bad values the same way
    ("embedder.path=/nope", "embedder.path='/nope'"),
    ("memory.store.mode=bogus", "memory.store.mode='bogus'"),
    ("memory.store.candidates=0", "memory.store.candidates=0"),
    ("society.attributes.attitude=angry", "society.attributes.attitude='angry'"),
    ("society.support_share=2", "society.support_share=2"),
    ("conversation.goals=bogus", "conversation.goals='bogus'"),
    ("conversation.memory_k=-1", "conversation.memory_k=-1"),
    ("conversation.max_turns=0", "conversation.max_turns=0"),
    ("model=openai model.max_concurrency=0", "model.max_concurrency=0"),
    ("matching=homophily matching.exact_limit=-3", "matching.exact_limit"),
    ("critic.dimensions.naturalness.weight=-1", "critic"),
    ("chat.max_message_chars=0 task=chat character=intj-001", "chat.max_message_chars=0"),
    ("serve.port=99999 task=serve", "serve.port=99999"),
    ("serve.host=0.0.0.0 task=serve", "serve.host='0.0.0.0'"),
    ("task=train training.runs=[x] training.lora.rank=0", "training.lora.rank=0"),
    ("task=train training.target=compatibility training.runs=[x] training.scorer.epochs=0",
     "training.scorer.epochs=0"),
    ("task=chat character=Nobody", "no character 'Nobody'"),
    ("seed=-1", "seed=-1"),
    # servers: the schedule, a pool's URLs, a key a remote server needs, llama-server's slots
    ("conversation.schedule=bogus", "conversation.schedule='bogus'"),
    ("conversation.concurrency=0", "conversation.concurrency=0"),
    ("model=openai model.base_url=[]", "model.base_url=[]"),
    ("model=openai model.tokenizer=/nowhere", "model.tokenizer='/nowhere'"),
    ("task=estimate estimate.characters=1", "estimate.characters=1"),
    ("task=estimate society.size=8 estimate.characters=9", "estimate.characters=9"),
    ("model=openai model.base_url=https://api.example.com/v1 model.api_key_env=SALON_UNSET_KEY",
     "model.api_key_env='SALON_UNSET_KEY'"),
    ("model=llamacpp model.slots=0", "model.slots=0"),
    ("model=llamacpp model.quantize=Q3", "model.quantize='Q3'"),
    ("simulation.budget.tokens=0", "simulation.budget.tokens=0"),
    ("simulation.budget.usd=-1", "simulation.budget.usd=-1"),
    ("model=llamacpp model.path=/models/x.safetensors", "model.path='/models/x.safetensors'"),
    # the Persona-Chat splits: a loop may not train on what it evaluates on
    ("task=loop training.personachat_dialogues=[0,200]", "dialogues 0-39, which loop.eval_dialogues"),
    ("task=loop loop.discriminator_dialogues=[150,250]", "test dialogues"),
    ("task=loop loop.name=exp.2", "loop.name='exp.2'"),
    ("task=train training.runs=[x] training.name=exp.2", "training.name='exp.2'"),
])
def test_bad_values_fail_fast_with_one_line(tmp_path: Path, override: str, key: str) -> None:
    result, seconds = run_salon(tmp_path, *override.split(" "))
    assert_usage_error(tmp_path, result, seconds, key)


def test_matching_error_lists_the_allowed_options(tmp_path: Path) -> None:
    result, seconds = run_salon(tmp_path, "matching=nope")
    line = assert_usage_error(tmp_path, result, seconds, "matching=nope")
    assert "random" in line and "round_robin" in line


def test_resume_of_a_missing_folder_fails_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    result, seconds = run_salon(tmp_path, f"resume={missing}")
    assert_usage_error(tmp_path, result, seconds, f"resume={missing}", "config.yaml")
    assert not missing.exists()


def test_resume_of_an_absolute_nonexistent_folder(tmp_path: Path) -> None:
    result, seconds = run_salon(tmp_path, "resume=/nonexistent")
    assert_usage_error(tmp_path, result, seconds, "resume=/nonexistent")
    assert not Path("/nonexistent").exists()


def write_bank(path: Path, bad_line: str) -> Path:
    good = SHIPPED_BANK.read_text(encoding="utf-8").splitlines()[:3]
    path.write_text("\n".join([good[0], good[1], bad_line, good[2]]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("change, field", [
    ({"age": "forty"}, "'age'"),
    ({"mbti": "XYZW"}, "'mbti'"),
    ({"facts": []}, "'facts'"),
    ({"favourite_colour": "blue"}, "'favourite_colour'"),
])
def test_malformed_bank_names_file_record_and_field(tmp_path: Path, change: dict, field: str) -> None:
    record = json.loads(SHIPPED_BANK.read_text(encoding="utf-8").splitlines()[5])
    bank = write_bank(tmp_path / "bank.jsonl", json.dumps({**record, **change}))
    result, seconds = run_salon(tmp_path, f"society.bank={bank}", "society.size=2")
    assert_usage_error(tmp_path, result, seconds, str(bank), "record 3", f"id={record['id']}", field)


def test_bank_record_that_is_not_json(tmp_path: Path) -> None:
    bank = write_bank(tmp_path / "bank.jsonl", '{"id": "x-1", "name": ')
    result, seconds = run_salon(tmp_path, f"society.bank={bank}")
    assert_usage_error(tmp_path, result, seconds, str(bank), "record 3", "not valid JSON")


def test_valid_overrides_pass_the_checks(tmp_path: Path) -> None:
    # --cfg job prints the composed config without running: the checks must let it through.
    result, seconds = run_salon(tmp_path, "experiment=smoke", "matching=round_robin", "society.size=5",
                                "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "size: 5" in result.stdout and "RoundRobinPairing" in result.stdout
    assert seconds < FAST


def test_resume_refuses_overrides_that_would_change_the_run(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.yaml").write_text("seed: 0\n")
    result, seconds = run_salon(tmp_path, f"resume={earlier}", "society.size=3")
    line = assert_usage_error(tmp_path, result, seconds, "society.size")
    assert "simulation.rounds" in line  # says what may change


def test_free_text_with_a_comma_says_how_to_quote_it(tmp_path: Path) -> None:
    """`task=match seeker="I lost my job, and I feel lost"` in a shell reaches Salon unquoted:
    Hydra would read a sweep; the error says how to quote, and the quoted form works."""
    result, seconds = run_salon(tmp_path, "task=match", "seeker=I lost my job, and I feel lost")
    line = assert_usage_error(tmp_path, result, seconds, "seeker=")
    assert "quote the value inside the argument" in line and """'seeker="I lost my job""" in line
    quoted = run_py("task=match", 'seeker="I lost my job, and I feel lost"', "--cfg", "job", timeout=60)
    assert quoted.returncode == 0 and "seeker: I lost my job, and I feel lost" in quoted.stdout
