"""Cross-encoder scorers at run time (CharacterChat's memory selector and compatibility scorer):
a pair of texts (history + memory, seeker persona + supporter persona) goes through one BERT
pass and comes out as one logit, read as a probability or a 1-5 score. Training them is
`training/scorers.py`; this is the half that loads and predicts.

A scorer folder holds ``model.safetensors``, ``config.json``, the tokenizer and ``scorer.json``
(task, text columns, label scaling, base model, held-out metrics); no pickle files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.devices import resolve_device, resolve_dtype
from core.errors import UsageError

SCORER_FILE = "scorer.json"
SCORER_FORMAT = "salon-cross-encoder/1"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ScorerInfo:
    """The contents of ``scorer.json``: what a scorer folder scores and how to read its logit."""

    task: str
    text_a: str
    text_b: str
    label: str
    base: str
    max_length: int
    score_min: float = 1.0
    score_max: float = 5.0
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    format: str = SCORER_FORMAT

    def to_label_scale(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> probabilities (classification) or scores on [score_min, score_max]."""
        if self.task == "classification":
            return 1.0 / (1.0 + np.exp(-logits))
        return self.score_min + np.clip(logits, 0.0, 1.0) * (self.score_max - self.score_min)

    def to_target(self, label: float) -> float:
        """A label as the training target of the logit (0/1, or scaled to [0, 1])."""
        if self.task == "classification":
            return float(label)
        return (float(label) - self.score_min) / (self.score_max - self.score_min)


def read_scorer_info(path: str | Path) -> ScorerInfo:
    """``scorer.json`` of a folder, or a one-line UsageError if it is not a Salon scorer."""
    file = Path(path).expanduser() / SCORER_FILE
    if not file.is_file():
        raise UsageError(f"{str(path)!r} is not a Salon scorer folder (no {SCORER_FILE}); "
                         "train one with training.scorers.train_cross_encoder")
    data = json.loads(file.read_text())
    if data.get("format") != SCORER_FORMAT:
        raise UsageError(f"{str(path)!r} holds scorer format {data.get('format')!r}; "
                         f"this Salon reads {SCORER_FORMAT!r}: retrain the scorer")
    return ScorerInfo(**data)


class CrossEncoder:
    """A loaded scorer: ``predict(a, b)`` runs the pairs through the model in length-sorted
    batches and returns probabilities or scores (see ``ScorerInfo.to_label_scale``)."""

    def __init__(self, model: Any, tokenizer: Any, info: ScorerInfo, batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", batch_size: int = 32,
             dtype: str = "float32") -> CrossEncoder:
        """``dtype="auto"`` picks bfloat16 where the hardware computes it natively (faster on
        such CPUs, scores agree to about 2 decimals); the default float32 is exact."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        info = read_scorer_info(path)
        device = resolve_device(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=resolve_dtype(dtype, device))
        model.to(device).eval()
        return cls(model, tokenizer, info, batch_size)

    def logits(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        import torch

        if len(a) != len(b):
            raise ValueError(f"{len(a)} first texts but {len(b)} second texts")
        order = np.argsort([len(x) + len(y) for x, y in zip(a, b, strict=True)], kind="stable")
        out = np.empty(len(a), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer([a[i] for i in rows], [b[i] for i in rows], truncation=True,
                                   max_length=self.info.max_length, padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch.to(self.model.device)).logits[:, 0]
            out[rows] = logits.float().cpu().numpy()
        return out

    def predict(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.info.to_label_scale(self.logits(a, b))


def scale_similarity(cosine: np.ndarray, low: float = 1.0, high: float = 5.0) -> np.ndarray:
    """Cosine similarity clipped to [0, 1] and mapped linearly onto [low, high]."""
    return low + np.clip(cosine, 0.0, 1.0) * (high - low)
