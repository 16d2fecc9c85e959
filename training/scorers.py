"""BERT-style cross-encoder scorers (CharacterChat's memory selector and compatibility scorer).

A scorer reads a pair of texts (history + memory, seeker persona + supporter persona) in one
BERT pass and outputs one logit. It is fine-tuned from all-MiniLM-L6-v2 (a BertModel) with the
transformers ``Trainer``:

- ``task="classification"``: labels 0/1, BCE on the logit; the scorer outputs a probability.
- ``task="regression"``: labels on ``[score_min, score_max]`` (1-5), scaled to [0, 1], MSE on the
  logit; the scorer outputs the logit clipped to [0, 1] and scaled back.

A scorer folder holds ``model.safetensors``, ``config.json``, the tokenizer and ``scorer.json``
(task, text columns, label scaling, base model, held-out metrics); no pickle files. Training
checkpoints go to ``<output>/checkpoints`` and a re-run with the same output resumes from the
latest one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UsageError, require
from core.seams import Embedder
from memory.crossencoder import (
    MINILM_NAME,
    SCORER_FILE,
    TASKS,
    CrossEncoder,
    ScorerInfo,
    read_scorer_info,
    scale_similarity,
)
from training.checkpoints import drop_pickled_arguments, last_complete, step_of, verified

RUN_FILE = "salon_training.json"
CHECKPOINTS = "checkpoints"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class CrossEncoderConfig:
    """How to fine-tune a cross-encoder scorer (fields carry their help text, TRL/PEFT style)."""

    output: str = field(metadata=_help(
        "Folder of the trained scorer; its `checkpoints/` sub-folder lets an interrupted run resume."))
    base: str | None = field(default=None, metadata=_help(
        "A BERT-style model folder (config.json + weights) to start from; None = the bundled "
        "all-MiniLM-L6-v2."))
    task: str = field(default="classification", metadata=_help(
        "classification: 0/1 labels, outputs a probability (memory selector); regression: labels "
        "on [score_min, score_max], outputs a score (compatibility)."))
    epochs: float = field(default=3.0, metadata=_help("Passes over the training set."))
    batch_size: int = field(default=16, metadata=_help("Pairs per training step."))
    learning_rate: float = field(default=5e-5, metadata=_help("Peak AdamW learning rate (linear decay)."))
    max_length: int = field(default=256, metadata=_help(
        "Tokens per pair (both texts together); longer pairs are truncated, longest text first."))
    seed: int = field(default=0, metadata=_help("Seed of the new head, the shuffling and dropout."))
    device: str = field(default="auto", metadata=_help("auto (CUDA, then MPS, then CPU), cpu, cuda or mps."))
    score_min: float = field(default=1.0, metadata=_help("Regression: the lowest label (scaled to 0)."))
    score_max: float = field(default=5.0, metadata=_help("Regression: the highest label (scaled to 1)."))
    save_steps: int = field(default=0, metadata=_help(
        "Checkpoint every this many steps; 0 = at the end of every epoch."))
    keep_checkpoints: bool = field(default=False, metadata=_help(
        "Keep `checkpoints/` after a finished run (to extend it later with more epochs); they hold "
        "optimizer state as pickle files, so the default deletes them."))

    def __post_init__(self) -> None:
        require(self.task in TASKS, "task", f"allowed is {', '.join(TASKS)}", self.task)
        require(self.epochs > 0, "epochs", "allowed is a number > 0", self.epochs)
        require(self.batch_size >= 1, "batch_size", "allowed is a whole number >= 1", self.batch_size)
        require(self.learning_rate > 0, "learning_rate", "allowed is a number > 0", self.learning_rate)
        require(self.max_length >= 8, "max_length", "allowed is a whole number >= 8", self.max_length)
        require(self.score_max > self.score_min, "score_max", "allowed is greater than score_min",
                self.score_max)
        require(self.save_steps >= 0, "save_steps", "allowed is a whole number >= 0", self.save_steps)
        require(bool(str(self.output).strip()), "output", "allowed is a folder path", self.output)


@dataclass(frozen=True)
class TrainedScorer:
    """A finished training: the scorer folder, held-out metrics, and the untrained baseline's."""

    path: Path
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    global_step: int = 0
    resumed_from_step: int = 0


def base_name(folder: Path) -> str:
    """The name a scorer records for its base: the bundled MiniLM by its hub name, a Salon
    scorer by its own base, any other folder by its name."""
    from memory.embedder import bundled_minilm_path

    if folder.resolve() == bundled_minilm_path().resolve():
        return MINILM_NAME
    if (folder / SCORER_FILE).is_file():
        return read_scorer_info(folder).base
    return folder.name


def base_folder(config: CrossEncoderConfig) -> Path:
    from memory.embedder import bundled_minilm_path

    folder = Path(config.base).expanduser() if config.base else bundled_minilm_path()
    if not (folder / "config.json").is_file():
        raise UsageError(f"base={config.base!r} is not a model folder (no config.json); give a folder "
                         "saved with save_pretrained, or leave base unset for the bundled MiniLM")
    return folder


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U of the positives over the negatives (ties count half)."""
    from scipy.stats import mannwhitneyu

    positive, negative = scores[labels == 1], scores[labels == 0]
    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


def task_metrics(task: str, predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """classification: AUC; regression: Spearman and MSE on the label scale."""
    from scipy.stats import spearmanr

    if task == "classification":
        return {"auc": auc(predicted, labels), "n": float(len(labels))}
    rho = spearmanr(predicted, labels).statistic
    return {"spearman": float(rho), "mse": float(np.mean((predicted - labels) ** 2)),
            "n": float(len(labels))}


def embedding_baseline(info: ScorerInfo, data: Any, embedder: Embedder) -> dict[str, float]:
    """The untrained baseline: cosine of MiniLM sentence embeddings of text_a and text_b
    (probability-free for AUC; mapped onto the label scale for MSE)."""
    a, b = embedder(list(data[info.text_a])), embedder(list(data[info.text_b]))
    cosine = np.sum(a * b, axis=1)
    predicted = cosine if info.task == "classification" else scale_similarity(
        cosine, info.score_min, info.score_max)
    return task_metrics(info.task, predicted, np.asarray(data[info.label], dtype=np.float64))


def check_data(config: CrossEncoderConfig, train: Any, eval: Any, text_a: str, text_b: str,
               label: str) -> None:
    """Refuse unusable data before any model loads, with one line saying what to do."""
    for name, data in (("train", train), ("eval", eval)):
        missing = [c for c in (text_a, text_b, label) if c not in data.column_names]
        if missing:
            raise UsageError(f"{name} set has no column {missing[0]!r} (columns: "
                             f"{', '.join(data.column_names)}); pass the right text_a/text_b/label")
        _check_labels(config, name, np.asarray(data[label], dtype=np.float64))
    if len(train) == 0:
        raise UsageError("train set is empty: build it from stored episodes first (run a simulation)")
    if len(eval) < 3:
        raise UsageError(f"eval set has {len(eval)} examples; it needs at least 3 to measure the scorer")
    if config.task == "classification" and len(set(eval[label])) < 2:
        raise UsageError("eval set has only one class; it needs examples labelled 0 and 1 to measure AUC")


def _check_labels(config: CrossEncoderConfig, name: str, labels: np.ndarray) -> None:
    if config.task == "classification":
        bad = labels[(labels != 0) & (labels != 1)]
        allowed = "0 or 1"
    else:
        bad = labels[~((labels >= config.score_min) & (labels <= config.score_max))]
        allowed = f"within [{config.score_min}, {config.score_max}]"
    if len(bad):
        raise UsageError(f"{name} set has label {bad[0]!r}; a {config.task} scorer needs labels {allowed}")


def train_cross_encoder(config: CrossEncoderConfig, train: Any, eval: Any, text_a: str, text_b: str,
                        label: str, *, embedder: Embedder | None = None,
                        callbacks: Sequence[Any] = ()) -> TrainedScorer:
    """Fine-tune a cross-encoder on ``train`` (datasets.Dataset) with the transformers Trainer,
    resuming from ``<output>/checkpoints`` if a checkpoint is there; save it to ``config.output``
    and report its metrics on ``eval`` next to the embedding-cosine baseline's. ``embedder``
    (default: the bundled MiniLM) computes the baseline; ``callbacks`` go to the Trainer."""
    check_data(config, train, eval, text_a, text_b, label)
    base = base_folder(config)
    output = Path(config.output).expanduser()
    info = ScorerInfo(task=config.task, text_a=text_a, text_b=text_b, label=label, base=base_name(base),
                      max_length=config.max_length, score_min=config.score_min, score_max=config.score_max)
    checkpoint = _resumable_checkpoint(output / CHECKPOINTS, info, len(train))
    trainer = _trainer(config, info, base, train, output / CHECKPOINTS)
    for callback in (drop_pickled_arguments(), *callbacks):
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    scorer = CrossEncoder(trainer.model.eval(), trainer.processing_class, info, config.batch_size)
    labels = np.asarray(eval[label], dtype=np.float64)
    metrics = task_metrics(config.task, scorer.predict(list(eval[text_a]), list(eval[text_b])), labels)
    baseline = embedding_baseline(info, eval, embedder or _minilm_embedder())
    info = ScorerInfo(**{**asdict(info), "metrics": metrics, "baseline_metrics": baseline})
    save_scorer(trainer.model, trainer.processing_class, info, output)
    if not config.keep_checkpoints:
        shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    return TrainedScorer(output, metrics, baseline, trainer.state.global_step, step_of(checkpoint))


def _minilm_embedder() -> Embedder:
    from memory.embedder import SentenceEmbedder

    return SentenceEmbedder()


def _trainer(config: CrossEncoderConfig, info: ScorerInfo, base: Path, train: Any, folder: Path) -> Any:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        set_seed,
    )

    set_seed(config.seed)  # the new classification head is drawn from this seed
    tokenizer = AutoTokenizer.from_pretrained(base)
    problem = "multi_label_classification" if config.task == "classification" else "regression"
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, problem_type=problem)
    encoded = _encode(train, tokenizer, info)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_FILE).write_text(json.dumps(_run_signature(info, len(train)), indent=2))
    return Trainer(model=model, args=_training_arguments(config, folder), train_dataset=encoded,
                   data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


def _encode(data: Any, tokenizer: Any, info: ScorerInfo) -> Any:
    """Tokenised pairs with ``labels`` as a one-element float list (the one logit's target)."""
    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(batch[info.text_a], batch[info.text_b], truncation=True,
                            max_length=info.max_length)
        encoded["labels"] = [[info.to_target(y)] for y in batch[info.label]]
        return encoded

    return data.map(encode, batched=True, remove_columns=data.column_names)


def _training_arguments(config: CrossEncoderConfig, folder: Path) -> Any:
    from transformers import TrainingArguments

    from core.devices import resolve_device

    return TrainingArguments(
        output_dir=str(folder), num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size, seed=config.seed, data_seed=config.seed,
        save_strategy="steps" if config.save_steps else "epoch", save_steps=config.save_steps or 500,
        save_total_limit=2, logging_steps=10, report_to="none", eval_strategy="no",
        use_cpu=resolve_device(config.device) == "cpu", dataloader_num_workers=0)


def _run_signature(info: ScorerInfo, rows: int) -> dict[str, Any]:
    return {"task": info.task, "base": info.base, "text_a": info.text_a, "text_b": info.text_b,
            "label": info.label, "train_rows": rows}


def _resumable_checkpoint(folder: Path, info: ScorerInfo, rows: int) -> Path | None:
    """The latest complete checkpoint of the same training, or None to start afresh."""
    latest = last_complete(folder)
    if latest is None:
        return None
    saved = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    if saved != _run_signature(info, rows):
        raise UsageError(f"{str(folder)!r} holds checkpoints of a different training ({saved}); choose "
                         "another output folder or delete its checkpoints")
    return verified(latest)


def save_scorer(model: Any, tokenizer: Any, info: ScorerInfo, output: Path) -> None:
    """Weights as safetensors, the tokenizer, and scorer.json last (it marks a complete folder)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / SCORER_FILE).unlink(missing_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    (output / SCORER_FILE).write_text(json.dumps(asdict(info), indent=2))
