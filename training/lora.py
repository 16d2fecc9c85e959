"""LoRA fine-tuning of a chat model with peft through TRL (SFT, or DPO from critic-ranked
pairs). No hand-written training loop: TRL's trainers run it, with checkpoints to resume."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from agents.models.loading import ModelSource
from core.devices import resolve_device
from core.errors import UsageError, is_number, is_whole, require
from training.checkpoints import drop_pickled_arguments, last_complete, verified

log = logging.getLogger(__name__)
METHODS = ("sft", "dpo")


@dataclass(frozen=True)
class LoraTrainingConfig:
    """Settings of one LoRA training (`training.*` in the config)."""

    method: str = field(default="sft", metadata={
        "help": "sft (imitate kept episodes) or dpo (prefer better-scored replies)"})
    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA layers"})
    target_modules: tuple[str, ...] = field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"), metadata={"help": "modules that get adapters"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training set"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: use epochs)"})
    batch_size: int = field(default=4, metadata={"help": "examples per device step"})
    gradient_accumulation: int = field(default=1, metadata={"help": "steps per optimizer update"})
    max_length: int = field(default=512, metadata={"help": "tokens per example (longer ones are cut)"})
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO temperature beta"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every this many steps"})
    seed: int = field(default=0, metadata={"help": "seed of the trainer (data order, dropout)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, ..."})
    bf16: str | bool = field(default="auto", metadata={
        "help": "bf16 autocast: auto (where native), true, false"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations to save memory (TRL's default; measured 2x slower on CPU)"})

    def __post_init__(self) -> None:
        require(self.method in METHODS, "method", f"allowed is one of {', '.join(METHODS)}", self.method)
        require(is_whole(self.rank, 1), "rank", "allowed is a whole number >= 1", self.rank)
        require(is_whole(self.batch_size, 1), "batch_size", "allowed is a whole number >= 1", self.batch_size)
        require(is_number(self.learning_rate, 0) and self.learning_rate > 0, "learning_rate",
                "allowed is a number > 0", self.learning_rate)
        require(self.bf16 in ("auto", "true", "false", True, False), "bf16", "allowed is auto, true or false",
                self.bf16)


@dataclass(frozen=True)
class TrainingResult:
    adapter_dir: Path
    train_loss: float
    eval_loss: float | None
    steps: int
    train_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds else 0.0


def as_prompt_completion(dataset: Dataset) -> Dataset:
    """`messages` -> conversational prompt/completion, so the loss covers only the reply."""
    def split(row: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}

    return dataset.map(split, remove_columns=dataset.column_names)


def train_lora(config: LoraTrainingConfig, base: ModelSource, train: Dataset, evaluation: Dataset | None,
               output_dir: Path, init_adapter: Path | None = None) -> TrainingResult:
    """LoRA on ``base``: a new adapter, or ``init_adapter`` trained further (the learning loop
    continues each generation's adapter; DPO then uses the base without adapters as reference)."""
    if len(train) == 0:
        raise UsageError("the training set is empty: lower training.min_overall or add runs")
    model, tokenizer = _load_base(base, config)
    if init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    trainer = _trainer(config, model, tokenizer, train, evaluation, output_dir)
    trainer.add_callback(drop_pickled_arguments())
    checkpoint = last_complete(output_dir)
    if checkpoint is not None:
        log.info("resuming LoRA training from %s", verified(checkpoint))
    started = time.perf_counter()
    state = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    adapter_dir = output_dir / "adapter"
    # Trainer.save_model would add a pickled training_args.bin; the adapter is safetensors only.
    trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    eval_loss = trainer.evaluate()["eval_loss"] if evaluation is not None and len(evaluation) else None
    return TrainingResult(adapter_dir, float(state.training_loss), eval_loss, int(state.global_step),
                          _trained_tokens(trainer, config), seconds)


def _load_base(base: ModelSource, config: LoraTrainingConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base.folder, dtype=torch.float32)
    return model.to(resolve_device(config.device)), tokenizer


def _use_bf16(config: LoraTrainingConfig) -> bool:
    from core.devices import resolve_dtype

    if config.bf16 != "auto":  # true/false, as text or (from YAML) as a bool
        return str(config.bf16).lower() == "true"
    import torch

    return resolve_dtype("auto", resolve_device(config.device)) == torch.bfloat16


def _peft_config(config: LoraTrainingConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")


def _common_args(config: LoraTrainingConfig, output_dir: Path) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir), "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs, "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size, "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation, "max_length": config.max_length,
        "save_strategy": "steps", "save_steps": config.save_steps, "save_total_limit": 2,
        "logging_steps": 5, "report_to": "none", "seed": config.seed, "bf16": _use_bf16(config),
        "use_cpu": resolve_device(config.device) == "cpu", "disable_tqdm": True,
        "gradient_checkpointing": config.gradient_checkpointing,
    }


def _trainer(config: LoraTrainingConfig, model: Any, tokenizer: Any, train: Dataset,
             evaluation: Dataset | None, output_dir: Path) -> Any:
    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**_common_args(config, output_dir), beta=config.dpo_beta)
        return DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                          processing_class=tokenizer, peft_config=_new_adapter(config, model))
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**_common_args(config, output_dir), completion_only_loss=True)
    return SFTTrainer(model=model, args=args, train_dataset=as_prompt_completion(train),
                      eval_dataset=as_prompt_completion(evaluation) if evaluation is not None else None,
                      processing_class=tokenizer, peft_config=_new_adapter(config, model))


def _new_adapter(config: LoraTrainingConfig, model: Any) -> Any:
    """The LoRA settings for a new adapter; None when the model already carries one to train."""
    from peft import PeftModel

    return None if isinstance(model, PeftModel) else _peft_config(config)


def _trained_tokens(trainer: Any, config: LoraTrainingConfig) -> int:
    """Tokens the training went through: mean tokenised example length (all token-id columns:
    SFT's `input_ids`, DPO's `prompt_ids`/`chosen_ids`/`rejected_ids`) times the examples seen."""
    data = trainer.train_dataset
    columns = [c for c in data.column_names if c.endswith("_ids") and "attention" not in c]
    lengths = [sum(len(data[i][c]) for c in columns) for i in range(len(data))]
    seen = trainer.state.global_step * config.batch_size * config.gradient_accumulation
    return int(sum(lengths) / len(lengths) * seen) if lengths else 0
