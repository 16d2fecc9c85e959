"""Shared fixtures. Heavy parts (the embedded chat model, MiniLM) load once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made
# torch steps 2-15x slower (measured); on an idle machine it costs nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PERSONACHAT = SHARED_DATA / "personachat" / "valid_both_original_no_cands.txt"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache: the user's (reused across runs) unless SALON_CACHE says otherwise."""
    configured = os.environ.get("SALON_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "salon"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def embedder():
    from memory.embedder import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture(scope="session")
def chat_model(cache_dir: Path):
    from agents.models.local import LocalChatModel

    return LocalChatModel(cache_dir=str(cache_dir), temperature=0.0)
