"""A few real LoRA steps on the embedded model through TRL: the adapter changes, is saved as
safetensors only, and reloads to the same outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from agents.models import loading
from training import lora


@pytest.fixture(scope="module")
def base(cache_dir: Path) -> loading.ModelSource:
    return loading.cached_folder(loading.embedded_source(), cache_dir)


def tiny_chat_set() -> Dataset:
    rows = [{"messages": [
        {"role": "system", "content": "You are Anna. Facts: i am a nurse. i have two cats."},
        {"role": "user", "content": f"Hi! What do you do for a living? ({i})"},
        {"role": "assistant", "content": "I am a nurse, and my two cats wait for me at home."}]}
        for i in range(8)]
    return Dataset.from_list(rows)


def test_lora_steps_change_the_adapter_and_reload_identically(base, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = lora.LoraTrainingConfig(max_steps=3, batch_size=4, max_length=128, learning_rate=1e-3,
                                     save_steps=2, bf16="false")
    model, tokenizer = lora._load_base(base, config)
    trainer = lora._trainer(config, model, tokenizer, tiny_chat_set(), None, tmp_path)
    trainer.train()
    trained = trainer.model.eval()
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().sum()) > 0 for p in lora_b)  # B starts at zero
    trained.save_pretrained(tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)

    fresh = AutoModelForCausalLM.from_pretrained(base.folder, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    ids = tokenizer("Hi! What do you do for a living?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected, got = trained(input_ids=ids).logits, reloaded(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-4)
    assert any(cp.name.startswith("checkpoint-") for cp in tmp_path.iterdir())


def steps(count: int) -> lora.LoraTrainingConfig:
    return lora.LoraTrainingConfig(max_steps=count, batch_size=4, max_length=128, save_steps=2, bf16="false")


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


# run in a child process: LoRA training of 3 steps that kills itself (SIGKILL) once checkpoint-2 is saved
KILLED_AFTER_CHECKPOINT_2 = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from agents.models import loading
from tests.test_lora import steps, tiny_chat_set
from training import lora

drop = lora.drop_pickled_arguments()

class DropThenDie(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        drop.on_save(args, state, control, **kwargs)
        if state.global_step == 2:
            os.kill(os.getpid(), signal.SIGKILL)

lora.drop_pickled_arguments = DropThenDie
base = loading.cached_folder(loading.embedded_source(), Path(sys.argv[1]))
lora.train_lora(steps(3), base, tiny_chat_set(), None, Path(sys.argv[2]))
"""


def test_training_killed_after_a_checkpoint_resumes_as_if_never_stopped(base, cache_dir: Path,
                                                                        tmp_path: Path) -> None:
    """SIGKILL once checkpoint-2 is saved (and a later checkpoint cut short beside it), then
    resumed: the adapter equals 3 uninterrupted steps'. Checkpoints hold no pickled
    training_args.bin."""
    import subprocess

    from tests.conftest import PYTHON, ROOT

    whole = lora.train_lora(steps(3), base, tiny_chat_set(), None, tmp_path / "whole")
    child = [PYTHON, "-c", KILLED_AFTER_CHECKPOINT_2, str(cache_dir), str(tmp_path / "resumed")]
    killed = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "resumed" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not list((tmp_path / "resumed").glob("checkpoint-*/training_args.bin"))
    (tmp_path / "resumed" / "checkpoint-3").mkdir()  # as if killed while checkpoint-3 was written
    (tmp_path / "resumed" / "checkpoint-3" / "optimizer.pt").write_bytes(b"half")
    resumed = lora.train_lora(steps(3), base, tiny_chat_set(), None, tmp_path / "resumed")
    assert resumed.steps == 3
    expected, found = adapter_weights(whole.adapter_dir), adapter_weights(resumed.adapter_dir)
    assert expected.keys() == found.keys()
    assert all(torch.allclose(expected[k], found[k], atol=1e-6) for k in expected)


def test_a_checkpoint_that_needs_pickle_is_refused_before_it_runs_code(base, tmp_path: Path) -> None:
    from core.errors import UsageError

    lora.train_lora(steps(2), base, tiny_chat_set(), None, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"state": _Payload(marker)}, tmp_path / "checkpoint-2" / "optimizer.pt")
    with pytest.raises(UsageError) as refused:
        lora.train_lora(steps(3), base, tiny_chat_set(), None, tmp_path)
    assert not marker.exists()
    message = str(refused.value)
    assert "optimizer.pt does not load as plain weights" in message and "\n" not in message
    assert f"delete {tmp_path} to train afresh" in message


def test_empty_training_set_is_a_usage_error(base, tmp_path: Path) -> None:
    from core.errors import UsageError

    with pytest.raises(UsageError, match="empty"):
        lora.train_lora(lora.LoraTrainingConfig(), base, tiny_chat_set().select([]), None, tmp_path)
