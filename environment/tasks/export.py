"""`task=export run=<run folder>`: the run's episodes as `<run>/dataset`, a Hugging Face
`datasets` folder with a dataset card (every run writes it; this is for older runs)."""

from __future__ import annotations

from omegaconf import DictConfig

from environment.dataset_export import write_dataset
from environment.graph_view import run_folder
from environment.store import SQLiteEpisodeStore


def check(cfg: DictConfig) -> None:
    """The run folder holds a run."""
    run_folder(cfg.run)


def run(cfg: DictConfig) -> None:
    source = run_folder(cfg.run)
    store = SQLiteEpisodeStore(source / "episodes.sqlite")
    try:
        episodes = store.episodes()
    finally:
        store.close()
    config = source / "config.yaml"
    summary = {"run": source.name, "exported by": "task=export"}
    target = write_dataset(source, episodes, summary, config.read_text() if config.is_file() else "")
    print(f"salon: {len(episodes)} episodes exported\n  {target}")
