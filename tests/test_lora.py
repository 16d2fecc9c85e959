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


def test_training_resumes_from_its_checkpoint(base, tmp_path: Path) -> None:
    first = lora.train_lora(lora.LoraTrainingConfig(max_steps=2, batch_size=4, max_length=128,
                                                    save_steps=2, bf16="false"),
                            base, tiny_chat_set(), None, tmp_path)
    assert first.steps == 2 and (first.adapter_dir / "adapter_model.safetensors").is_file()
    second = lora.train_lora(lora.LoraTrainingConfig(max_steps=3, batch_size=4, max_length=128,
                                                     save_steps=2, bf16="false"),
                             base, tiny_chat_set(), None, tmp_path)
    assert second.steps == 3  # continued from checkpoint-2: one more step, not three new ones
    assert second.seconds < first.seconds * 1.5 + 5


def test_empty_training_set_is_a_usage_error(base, tmp_path: Path) -> None:
    from core.errors import UsageError

    with pytest.raises(UsageError, match="empty"):
        lora.train_lora(lora.LoraTrainingConfig(), base, tiny_chat_set().select([]), None, tmp_path)
