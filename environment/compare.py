"""`python run.py task=compare runs=<sweep folder>`: compare pairing policies over a sweep.

A run is any folder below the sweep folder with ``config.yaml`` and ``episodes.sqlite``
(Hydra's ``<n>_<overrides>`` layout). Its policy is the ``matching`` choice Hydra recorded
(plus any ``matching.*`` overrides), else the policy class named in its config. Per policy,
``compare.md`` gives critic scores with 95% t-intervals over episodes (pooled across seeds) and
over seeds (one mean per run), and graph metrics over seeds; ``compare.png`` draws them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra.utils import to_absolute_path
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from agents.bank import load_bank
from core.errors import UsageError
from core.stats import mean_ci
from environment.graph import build_graph, graph_metrics
from environment.markdown import markdown_table
from environment.report import score_dimensions
from environment.store import SQLiteEpisodeStore

GRAPH_METRICS = {"density": "density", "average_clustering": "clustering",
                 "mbti_assortativity": "MBTI assortativity",
                 "mean_partners": "distinct partners per character"}


@dataclass(frozen=True)
class RunResult:
    """One run of the sweep: its policy, seed, per-episode scores and graph metrics."""

    folder: Path
    policy: str
    seed: int
    overall: tuple[float, ...]
    dimensions: dict[str, tuple[float, ...]]
    graph: dict[str, float]


@dataclass(frozen=True)
class PolicySummary:
    """A policy's runs; each statistic is (mean, 95% CI half-width, n)."""

    policy: str
    runs: tuple[RunResult, ...]

    def over_episodes(self, dimension: str = "overall") -> tuple[float, float, int]:
        return mean_ci(v for run in self.runs for v in _values(run, dimension))

    def over_seeds(self, dimension: str = "overall") -> tuple[float, float, int]:
        return mean_ci(mean_ci(_values(run, dimension))[0] for run in self.runs)

    def graph(self, metric: str) -> tuple[float, float, int]:
        return mean_ci(run.graph[metric] for run in self.runs)


def _values(run: RunResult, dimension: str) -> tuple[float, ...]:
    return run.overall if dimension == "overall" else run.dimensions.get(dimension, ())


def sweep_folder(value: object) -> Path:
    """The sweep folder of ``runs=``, checked to hold at least one run (else one-line error)."""
    if value is None or not str(value).strip():
        raise UsageError("runs is missing: python run.py task=compare runs=<sweep folder>")
    folder = Path(to_absolute_path(str(value))).expanduser()
    if not folder.is_dir():
        raise UsageError(f"runs={value}: no such folder; give a sweep folder (outputs/sweeps/<date>)")
    if not find_runs(folder):
        raise UsageError(f"runs={value}: no runs there (no subfolder with config.yaml and episodes.sqlite); "
                         "run a sweep first: python run.py -m matching=random,homophily seed=1,2")
    return folder


def find_runs(folder: Path) -> list[Path]:
    """Run folders below ``folder``, in natural order (Hydra's job 2 before job 10)."""
    runs = [p.parent for p in folder.rglob("config.yaml") if (p.parent / "episodes.sqlite").is_file()]
    return sorted(runs, key=_natural)


def _natural(path: Path) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", str(path)) if part]


def policy_label(folder: Path, config: DictConfig) -> str:
    """Hydra's recorded ``matching`` choice (+ ``matching.*`` overrides), else the class name."""
    hydra_file, overrides_file = folder / ".hydra" / "hydra.yaml", folder / ".hydra" / "overrides.yaml"
    choice = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices.matching") \
        if hydra_file.is_file() else None
    if not choice:
        target = str(OmegaConf.select(config, "matching._target_") or "unknown")
        name = target.rsplit(".", 1)[-1].removesuffix("Pairing")
        choice = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    extras = [o for o in OmegaConf.load(overrides_file) if str(o).startswith("matching.")] \
        if overrides_file.is_file() else []
    if not extras:
        return str(choice)
    return f"{choice} ({', '.join(str(o).removeprefix('matching.') for o in extras)})"


def load_run(folder: Path) -> RunResult:
    config = OmegaConf.load(folder / "config.yaml")
    characters = folder / "characters.jsonl"
    personas = load_bank(characters) if characters.is_file() else []
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    try:
        episodes = store.episodes()
    finally:
        store.close()
    scored = [e for e in episodes if e.scores is not None]
    dimensions = {d: tuple(e.scores.values.get(d, math.nan) for e in scored)
                  for d in score_dimensions(scored)}
    return RunResult(folder, policy_label(folder, config), int(OmegaConf.select(config, "seed") or 0),
                     tuple(e.scores.overall for e in scored), dimensions,
                     graph_metrics(build_graph(personas, episodes)))


def summarise(runs: Sequence[RunResult]) -> list[PolicySummary]:
    """Runs grouped by policy, in the order policies first appear (runs sorted by seed)."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.policy, []).append(run)
    return [PolicySummary(policy, tuple(sorted(members, key=lambda r: (r.seed, str(r.folder)))))
            for policy, members in groups.items()]


def _cell(statistic: tuple[float, float, int], digits: int = 2) -> str:
    mean, half, _ = statistic
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {'n/a' if math.isnan(half) else f'{half:.{digits}f}'}"


def all_dimensions(summaries: Sequence[PolicySummary]) -> list[str]:
    seen: dict[str, None] = {}
    for summary in summaries:
        for run in summary.runs:
            seen.update(dict.fromkeys(run.dimensions))
    return list(seen)


def scores_table(summaries: Sequence[PolicySummary], over: str) -> str:
    dimensions = ["overall", *all_dimensions(summaries)]
    rows = []
    for s in summaries:
        stat = s.over_episodes if over == "episodes" else s.over_seeds
        count = s.over_episodes()[2] if over == "episodes" else len(s.runs)
        rows.append([s.policy, len(s.runs), count, *(_cell(stat(d)) for d in dimensions)])
    return markdown_table(["policy", "runs", over, *dimensions], rows)


def graph_table(summaries: Sequence[PolicySummary]) -> str:
    rows = [[s.policy, len(s.runs), *(_cell(s.graph(m), 3) for m in GRAPH_METRICS)] for s in summaries]
    return markdown_table(["policy", "runs", *GRAPH_METRICS.values()], rows)


def runs_table(summaries: Sequence[PolicySummary]) -> str:
    rows = [[f"`{r.folder.name}`", s.policy, r.seed, len(r.overall), _cell(mean_ci(r.overall)),
             f"{r.graph['mean_partners']:.2f}"] for s in summaries for r in s.runs]
    return markdown_table(["run", "policy", "seed", "scored episodes", "overall", "distinct partners"], rows)


def write_comparison(path: Path, sweep: Path, summaries: Sequence[PolicySummary]) -> str:
    """Write compare.md and return its text."""
    sections = [
        f"# Pairing policies compared\n\nSweep: `{sweep}` ({sum(len(s.runs) for s in summaries)} runs). "
        "Cells are mean ± the half-width of a 95% t-interval (n/a below two values); critic scores are 1-5.",
        "## Critic scores over episodes\n\nEvery scored episode of a policy's runs, pooled across seeds.\n\n"
        + scores_table(summaries, "episodes"),
        "## Critic scores over seeds\n\nOne mean per run; the interval is over the runs (seeds).\n\n"
        + scores_table(summaries, "seeds"),
        "## Interaction graph over seeds\n\nOne value per run's graph; distinct partners = partners met per "
        "character; MBTI assortativity > 0 means characters met their own type more than chance.\n\n"
        + graph_table(summaries),
        "## Runs\n\n" + runs_table(summaries),
    ]
    text = "\n\n".join(sections) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def draw_comparison(path: Path, summaries: Sequence[PolicySummary]) -> Path:
    """compare.png: overall and per-dimension scores (over episodes and over seeds), graph metrics."""
    figure = Figure(figsize=(14, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 4)
    _score_bars(figure.add_subplot(grid[0, :]), summaries)
    colours = [f"C{i % 10}" for i in range(len(summaries))]
    for column, (metric, label) in enumerate(GRAPH_METRICS.items()):
        axes = figure.add_subplot(grid[1, column])
        for k, summary in enumerate(summaries):
            mean, half, _ = summary.graph(metric)
            axes.bar(k, mean, 0.7, yerr=0.0 if math.isnan(half) else half, capsize=3, color=colours[k])
        axes.set_xticks(range(len(summaries)), [s.policy for s in summaries], rotation=20, fontsize=8)
        axes.set_title(f"{label} (over seeds)", fontsize=10)
    figure.suptitle("Pairing policies: mean with 95% CI")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _score_bars(axes: Axes, summaries: Sequence[PolicySummary]) -> None:
    dimensions = ["overall", *(d for d in all_dimensions(summaries)
                               if any(not math.isnan(s.over_episodes(d)[0]) for s in summaries))]
    series = [[s.over_episodes(d) for d in dimensions] for s in summaries]
    _bars(axes, dimensions, series, [s.policy for s in summaries])
    axes.set_ylabel("critic score (1-5), CI over episodes")
    axes.set_ylim(1, 5)


def _bars(axes: Axes, groups: Sequence[str], series: Sequence[Sequence[tuple[float, float, int]]],
          labels: Sequence[str]) -> None:
    """Grouped bars: one group per ``groups`` entry, one bar per series, CI half-widths as error bars."""
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups))
    for k, (values, label) in enumerate(zip(series, labels, strict=True)):
        means = [v[0] for v in values]
        errors = [0.0 if math.isnan(v[1]) else v[1] for v in values]
        axes.bar(positions + (k - (len(series) - 1) / 2) * width, means, width, yerr=errors,
                 capsize=3, label=label)
    axes.set_xticks(positions, groups, fontsize=9)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="policy")
