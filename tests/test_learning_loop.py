"""The learning loop end to end on a tiny society, then its adapter swapped back in:
real model, real LoRA steps, real registry, real Persona-Chat evaluation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from agents.models.servers import llama_server_path
from tests.conftest import PERSONACHAT, ROOT, run_py, salon_env, warm_starts

pytestmark = pytest.mark.skipif(not PERSONACHAT.is_file(), reason="shared Persona-Chat data missing")


salon = run_py


# 3 turns, 2 candidates of 24 tokens: the best-of-n turns still give DPO pairs for training and
# evaluation (4 and 1 measured; 2 turns were not tried). A loop with these took 3:23 alone on an
# AVX2 machine, 6:04 with 4 turns and 3 candidates of 48 tokens
LOOP = ["task=loop", "experiment=smoke", "loop.generations=1", "loop.held_out=1", "conversation.max_turns=3",
        "conversation.min_turns=3", "conversation.candidates=2", "model.max_new_tokens=24",
        "loop.eval_dialogues=[0,2]", "loop.eval_per_dialogue=2",
        "loop.test_dialogues=[200,202]", "loop.test_per_dialogue=1", "loop.discriminator_dialogues=[40,46]",
        "loop.warm_start_steps=1", "training.personachat_dialogues=[40,43]", "training.lora.max_steps=1",
        "training.lora.batch_size=2", "training.scorer.epochs=1", "simulation.progress=false"]


def generation_done(folder: Path, index: int) -> bool:
    try:
        state = json.loads((folder / "loop.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return len(state["generations"]) > index and state["generations"][index]["done"]


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A loop killed (SIGKILL) right after generation 0's adapter was registered (before
    loop.json records it), resumed and killed again right after generation 0 finished, then
    resumed to the end."""
    folder, registry = tmp_path_factory.mktemp("loop"), tmp_path_factory.mktemp("registry")
    arguments = [*LOOP, f"paths.registry_root={registry}", f"hydra.run.dir={folder}"]
    # registration 1 is the warm start, 2 generation 0's adapter
    killed = run_py("registered", "2", *arguments, script="tests/kill_at.py", timeout=900)
    assert killed.returncode == -9 and not generation_done(folder, 0), killed.stderr[-3000:]
    process = warm_starts().popen(ROOT / "run.py", [f"resume={folder}"], salon_env())
    deadline = time.monotonic() + 900
    while not generation_done(folder, 0) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    process.kill()  # SIGKILL: no cleanup of any kind
    process.wait(timeout=60)
    log = process.output()[1]
    assert generation_done(folder, 0), log[-3000:]
    before = json.loads((folder / "loop.json").read_text())
    result = salon(f"resume={folder}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, registry, before


def test_the_loop_resumes_after_a_kill_between_generations(loop_run) -> None:
    folder, registry, before = loop_run
    after = json.loads((folder / "loop.json").read_text())
    assert after["generations"][0] == before["generations"][0]  # generation 0 was not run again
    assert len(after["generations"]) == 2 and all(g["done"] for g in after["generations"])
    versions = sorted(p.parent.name for p in (registry / "models").glob("*/*/card.json"))
    assert versions == ["1", "2"]  # the warm start and generation 0's adapter, each trained once
    name = json.loads(next((registry / "models").glob("*/2/card.json")).read_text())["name"]
    assert after["generations"][0]["trained_adapter"] == f"{name}:2"  # found again, not retrained


TIMINGS = ("seconds", "train_tokens_per_second")  # wall-clock figures: never equal between two runs


@pytest.fixture(scope="module")
def whole_loop(loop_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same loop, uninterrupted (its folder named like the killed one's: adapters are named
    after the loop's folder)."""
    folder = tmp_path_factory.mktemp("whole") / loop_run[0].name
    registry = tmp_path_factory.mktemp("whole_registry")
    result = salon(*LOOP, f"paths.registry_root={registry}", f"hydra.run.dir={folder}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, registry


def test_the_killed_and_resumed_loop_equals_the_uninterrupted_one(loop_run, whole_loop) -> None:
    from safetensors.numpy import load_file

    (killed, killed_registry, _), (whole, whole_registry) = loop_run, whole_loop
    state, expected = (json.loads((f / "loop.json").read_text()) for f in (killed, whole))
    for mine, theirs in zip(state["generations"], expected["generations"], strict=True):
        assert {k: v for k, v in mine.items() if k not in TIMINGS} == \
            {k: v for k, v in theirs.items() if k not in TIMINGS}
    assert state["test"] == expected["test"] and state["held_out"] == expected["held_out"]
    for generation in ("gen0", "gen1"):
        assert (killed / generation / "episodes.jsonl").read_text() == \
            (whole / generation / "episodes.jsonl").read_text()
    adapters = [load_file(next(r.glob("models/*/2/**/adapter_model.safetensors")))
                for r in (killed_registry, whole_registry)]
    assert adapters[0].keys() == adapters[1].keys()
    assert all(np.array_equal(adapters[0][k], adapters[1][k]) for k in adapters[0])


def test_dpo_steps_change_the_warm_start_adapter(loop_run) -> None:
    from safetensors.numpy import load_file

    _, registry, _ = loop_run
    warm, trained = (next((registry / "models").glob(f"*/{v}")) for v in (1, 2))
    card = json.loads((trained / "card.json").read_text())
    assert card["method"] == "dpo" and card["metrics"]["train_tokens"] > 0
    before, after = (load_file(next(folder.rglob("adapter_model.safetensors"))) for folder in (warm, trained))
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # DPO moved the weights


def test_loop_reports_both_generations_on_held_out_characters(loop_run) -> None:
    folder, registry, _ = loop_run
    report = (folder / "loop_report.md").read_text()
    assert "gen 0 (loop-" in report and "gen 1 (loop-" in report and "Welch's t" in report
    assert (folder / "loop.png").stat().st_size > 1000
    data = json.loads((folder / "loop.json").read_text())
    first, second = data["generations"]
    assert data["warm_start"] == first["adapter"] and first["trained_adapter"] == second["adapter"]
    assert first["dataset"]["train"] > 0
    held = set(data["held_out"])
    card = json.loads(next((registry / "models").glob("*/2/card.json")).read_text())
    assert card["dataset"]["kind"] == "turn_preference"
    trained_on = set(card["dataset"]["characters"]["train"])
    assert trained_on and not held & trained_on  # held-out characters never enter training
    for generation in (first, second):
        assert generation["held_out_scores"]["overall"] and generation["perplexity"] > 1
        assert 0 <= generation["discriminator_auc"] <= 1 and "repeat_share" in generation["degeneration"]
    assert set(data["test"]) == {"base", "generation 0", "generation 1"}


def test_adapter_swaps_into_a_plain_simulation_and_is_recorded(loop_run, tmp_path: Path) -> None:
    """A plain `task=simulate` with the loop's settings and generation 0's adapter is generation
    1, episode for episode: what the loop simulated after the kills is what an uninterrupted
    loop simulates from the same generation 0 (which the kills did not make it redo)."""
    folder, registry, _ = loop_run
    adapter = json.loads((folder / "loop.json").read_text())["generations"][0]["trained_adapter"]
    settings = [a for a in LOOP if not a.startswith("task=")]
    result = salon(*settings, f"model.adapter={adapter}", f"paths.registry_root={registry}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    for line in lines:
        episode = json.loads(line)
        assert episode["model"].endswith(f"+{adapter}")
        assert all(label.endswith(f"+{adapter}") for label in episode["models"].values())
        assert all(turn["model"] == episode["models"][turn["speaker"]] for turn in episode["turns"])
    assert lines == (folder / "gen1" / "episodes.jsonl").read_text().splitlines()


@pytest.mark.parametrize("backend", ["local", "llamacpp"])
def test_an_ab_cohort_run_records_the_adapter_per_turn_and_compares_the_cohorts(
        loop_run, tmp_path: Path, backend: str) -> None:
    """In process, peft picks each row's adapter; on llama-server, each request picks its own."""
    if backend == "llamacpp" and not llama_server_path().is_file() and not os.environ.get(
            "SALON_REQUIRE_LLAMA_SERVER"):
        pytest.skip("llama-server is not built: make llama-server")
    folder, registry, _ = loop_run
    adapter = json.loads((folder / "loop.json").read_text())["generations"][0]["trained_adapter"]
    result = salon(f"model={backend}", "experiment=smoke", f"agents.cohort.adapter={adapter}",
                   "agents.cohort.share=0.5",
                   f"paths.registry_root={registry}", "simulation.progress=false",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    spoken = {turn["model"] for e in episodes for turn in e["turns"]}
    assert len(spoken) == 2 and sum(label.endswith(f"+{adapter}") for label in spoken) == 1
    cohorts = [json.loads(line)["extra"]["cohort"]
               for line in (tmp_path / "run" / "characters.jsonl").read_text().splitlines()]
    assert sorted(cohorts) == ["adapter", "adapter", "base", "base"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Models" in report and "Welch's t" in report


def test_evaluate_compares_base_and_adapter(loop_run, tmp_path: Path) -> None:
    _, registry, _ = loop_run
    result = salon("task=evaluate", "eval=personachat", "eval.split=dev", "eval.dialogues=3",
                   "eval.max_per_dialogue=2", f"paths.registry_root={registry}",
                   f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| SmolLM2")]
    assert len(rows) == 2 and "+loop-" in rows[1]  # the latest version of the loop's adapter
    numbers = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert all(r["perplexity"] > 1 and 0 <= r["f1"] <= 1 for r in numbers)


def test_adapter_from_another_base_is_refused_before_work(loop_run, tmp_path: Path) -> None:
    _, registry, _ = loop_run
    card_path = next((registry / "models").glob("*/1/card.json"))
    name = card_path.parent.parent.name
    card = json.loads(card_path.read_text())
    copy = tmp_path / "registry" / "models" / name / "1"
    copy.mkdir(parents=True)
    for file in card_path.parent.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "card.json").write_text(json.dumps({**card, "base_model": "Llama-2-7b-chat-hf"}))
    result = salon("experiment=smoke", f"model.adapter={name}:1",
                   f"paths.registry_root={tmp_path / 'registry'}", f"hydra.run.dir={tmp_path / 'run'}",
                   timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("salon: error:") and "Llama-2-7b-chat-hf" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_served_adapter_changes_what_llama_server_says(loop_run, cache_dir: Path) -> None:
    """The loop's adapter, converted by llama.cpp's converter and chosen per request, moves the
    served model's next-token probabilities (the same request without it does not)."""
    if not llama_server_path().is_file() and not os.environ.get("SALON_REQUIRE_LLAMA_SERVER"):
        pytest.skip("llama-server is not built: make llama-server")
    from langchain_core.messages import HumanMessage, SystemMessage

    from agents.models.served import LlamaCppChat

    folder, registry, _ = loop_run
    ref = json.loads((folder / "loop.json").read_text())["generations"][0]["trained_adapter"]
    name, version = ref.split(":")
    # Q8_0: with auto's F32 on an AVX2 Zen 3 the same request twice (the second from the prompt
    # cache) differed by 4e-4, float kernels' sums in another order; Q8_0's integer ones did not
    model = LlamaCppChat(adapters={ref: str(registry / "models" / name / version)}, cache_dir=str(cache_dir),
                         slots=2, quantize="Q8_0")
    talk = [[SystemMessage("You are Ann, a baker. Answer with one digit."),
             HumanMessage("Rate your day, 1-5.")]]
    try:
        base = model.choice_probabilities(talk, list("12345"))
        again = model.choice_probabilities(talk, list("12345"))
        model.adapter = ref
        tuned = model.choice_probabilities(talk, list("12345"))
    finally:
        model.close()
    assert np.abs(base - again).max() < 1e-6 < np.abs(base - tuned).max()
    assert not list((registry / "models" / name / version).glob("*.gguf"))  # the registry is not written
