"""`task=compare runs=<sweep folder>`: compare.md and compare.png, per pairing policy."""

from __future__ import annotations

from omegaconf import DictConfig

from environment.build import run_dir
from environment.compare import (
    draw_comparison,
    find_runs,
    graph_table,
    load_run,
    scores_table,
    summarise,
    sweep_folder,
    write_comparison,
)


def check(cfg: DictConfig) -> None:
    """The sweep folder holds at least one run."""
    sweep_folder(cfg.runs)


def run(cfg: DictConfig) -> None:
    sweep = sweep_folder(cfg.runs)
    summaries = summarise([load_run(folder) for folder in find_runs(sweep)])
    folder = run_dir(cfg)
    write_comparison(folder / "compare.md", sweep, summaries)
    draw_comparison(folder / "compare.png", summaries)
    print(scores_table(summaries, "episodes") + "\n\n" + graph_table(summaries))
    print(f"salon: compared {sum(len(s.runs) for s in summaries)} runs of {len(summaries)} policies")
    for name in ("compare.md", "compare.png"):
        print(f"  {folder / name}")
