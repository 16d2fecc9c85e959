"""Process-wide settings for libraries (quiet progress bars, offline hubs)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Salon draws its own progress bars; the libraries' per-load bars and chatter go."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    for name in ("chromadb", "httpx", "httpx2", "openai", "sentence_transformers", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*GGUF.*")
