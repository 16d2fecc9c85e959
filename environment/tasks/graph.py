"""`task=graph run=<run folder> [graph.rounds=[0,2]] [graph.mbti=[INTJ,ENFP]]`: the interactive
graph.html and graph.gexf of a run."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from environment.build import run_dir
from environment.graph_view import load_graph, parse_filter, run_folder, save_gexf, summary_text, write_html


def check(cfg: DictConfig) -> None:
    """The run folder and the filters."""
    run_folder(cfg.run)
    parse_filter(OmegaConf.select(cfg, "graph.rounds"), OmegaConf.select(cfg, "graph.mbti"))


def run(cfg: DictConfig) -> None:
    source = run_folder(cfg.run)
    chosen = parse_filter(OmegaConf.select(cfg, "graph.rounds"), OmegaConf.select(cfg, "graph.mbti"))
    graph, episodes = load_graph(source, chosen)
    print(summary_text(graph, chosen, len(episodes)))
    folder = run_dir(cfg)
    title = f"Salon interaction graph: {source.name}"
    html = write_html(folder / "graph.html", graph, episodes, title=title, subtitle=chosen.describe(),
                      seed=int(OmegaConf.select(cfg, "graph.layout_seed") or 0))
    print(f"  {html}\n  {save_gexf(graph, folder / 'graph.gexf')}")
