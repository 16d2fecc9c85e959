"""A human-vs-Salon discriminator (Synthetic-Persona-Chat's Turing test, automated): a
cross-encoder fine-tuned once from the bundled MiniLM on Persona-Chat dialogues 40-199 (human,
label 0) against Salon dialogues (label 1), then frozen. Its AUC at telling Salon's dialogues
from human test dialogues is a measure the critic did not train for: 0.5 means human-like.

Both kinds are normalised alike before it reads them (lower case, punctuation spaced as in
Persona-Chat, the first ``lines`` lines, the first speaker's persona facts beside them), so it
cannot win on casing, tokenisation or length alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value

from core.records import Episode
from memory.crossencoder import CrossEncoder
from training.scorers import CrossEncoderConfig, TrainedScorer, auc, train_cross_encoder

LINES = 6
FEATURES = Features({"persona": Value("string"), "dialogue": Value("string"), "label": Value("int32")})


def normalise(text: str) -> str:
    """Lower case, punctuation as separate tokens, single spaces (Persona-Chat's own form)."""
    text = re.sub(r"([.!?,;:])", r" \1 ", text.lower().replace("’", "'"))
    return " ".join(text.split())


def as_texts(episode: Episode, lines: int = LINES) -> tuple[str, str]:
    """(the first speaker's persona facts, the first ``lines`` lines), normalised."""
    first = episode.participants[0]
    spoken = [t.text for t in episode.turns if not t.failed][:lines]
    return normalise(" ".join(episode.personas.get(first, ()))), " | ".join(normalise(t) for t in spoken)


def dataset(human: Sequence[Episode], salon: Sequence[Episode]) -> Dataset:
    rows = [dict(zip(("persona", "dialogue"), as_texts(e), strict=True)) | {"label": label}
            for label, group in ((0, human), (1, salon)) for e in group]
    return Dataset.from_list(rows, features=FEATURES)


def train_discriminator(human: Sequence[Episode], salon: Sequence[Episode], config: CrossEncoderConfig,
                        seed: int) -> TrainedScorer:
    """Fine-tune a classification cross-encoder (``config.output``) on ``human`` vs ``salon`` (a
    fifth of each held back to measure it)."""
    rng = np.random.default_rng(seed)
    held = {id(e) for group in (human, salon)
            for e in [group[int(i)] for i in rng.permutation(len(group))[: max(2, len(group) // 5)]]}
    train = dataset([e for e in human if id(e) not in held], [e for e in salon if id(e) not in held])
    evaluation = dataset([e for e in human if id(e) in held], [e for e in salon if id(e) in held])
    return train_cross_encoder(config, train.shuffle(seed=seed), evaluation, "persona", "dialogue", "label")


def discriminator_auc(path: Path, salon: Sequence[Episode], human: Sequence[Episode]) -> float:
    """P(the discriminator finds a Salon dialogue more Salon-like than a human one)."""
    scorer = CrossEncoder.load(path, dtype="auto")
    texts = [as_texts(e) for e in (*salon, *human)]
    scores = scorer.predict([a for a, _ in texts], [b for _, b in texts])
    labels = np.array([1] * len(salon) + [0] * len(human))
    return auc(np.asarray(scores), labels)
