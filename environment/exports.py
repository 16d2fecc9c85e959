"""A run's outputs: episodes.jsonl, graph.graphml, graph.png, report.md and dataset/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.persona import Persona
from environment.dataset_export import write_dataset
from environment.graph import build_graph, draw_graph, save_graphml
from environment.report import write_report
from environment.store import SQLiteEpisodeStore


def export_run(folder: Path, store: SQLiteEpisodeStore, personas: Sequence[Persona], *, seed: int,
               summary: dict[str, str], wall_seconds: float, title: str = "Salon run",
               prices: Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    episodes = store.episodes()
    store.export_jsonl(folder / "episodes.jsonl")
    graph = build_graph(personas, episodes)
    save_graphml(graph, folder / "graph.graphml")
    draw_graph(graph, folder / "graph.png", seed=seed)
    write_report(folder / "report.md", title=title, config_summary=summary, episodes=episodes,
                 graph=graph, wall_seconds=wall_seconds, prices=prices)
    config = folder / "config.yaml"
    write_dataset(folder, episodes, summary, config.read_text() if config.is_file() else "")
    return [folder / name for name in ("episodes.sqlite", "episodes.jsonl", "graph.graphml",
                                       "graph.png", "report.md", "dataset")]
