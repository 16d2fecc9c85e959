"""`python run.py task=graph run=<run folder>`: the interaction graph of a run, inspected.

Prints the graph summary and writes, in this task's run folder:

- ``graph.html``: a self-contained interactive view (inline SVG and JavaScript, no network):
  nodes coloured by MBTI type, edges drawn wider and brighter the higher their mean overall
  score; clicking an edge lists its episodes (id, round, roles, score, first lines), clicking a
  node lists its partners; the wheel zooms, dragging pans.
- ``graph.gexf``: the same (filtered) graph for Gephi.

Filters: ``graph.rounds=[a,b]`` keeps the episodes of rounds a..b; ``graph.mbti=[INTJ,...]``
keeps the characters of those types and the episodes among them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from hydra.utils import to_absolute_path
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_hex
from omegaconf import OmegaConf

from agents.bank import load_bank
from agents.persona import MBTI_TYPES
from core.errors import UsageError
from core.records import Episode
from environment.graph import build_graph, graph_metrics, mbti_colour
from environment.store import SQLiteEpisodeStore

FIRST_LINES = 2
LINE_LIMIT = 240
CANVAS = (1000.0, 700.0)
MARGIN = 40.0
TEMPLATE = Path(__file__).with_name("graph_view.html")


@dataclass(frozen=True)
class GraphFilter:
    """Which episodes and characters to show: rounds first..last (inclusive) and MBTI types."""

    rounds: tuple[int, int] | None = None
    mbti: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"rounds {self.rounds[0]}-{self.rounds[1]}"] if self.rounds else []
        parts += [f"MBTI {', '.join(self.mbti)}"] if self.mbti else []
        return "; ".join(parts) or "none"


def parse_filter(rounds: Any, mbti: Any) -> GraphFilter:
    """``graph.rounds`` and ``graph.mbti`` from config, or a one-line UsageError."""
    window = None
    if rounds is not None:
        values = list(rounds) if OmegaConf.is_list(rounds) or isinstance(rounds, list | tuple) else [rounds]
        whole = all(isinstance(v, int) and v >= 0 for v in values)
        if len(values) != 2 or not whole or values[0] > values[1]:
            raise UsageError(f"graph.rounds={values} is invalid: allowed is [first, last], whole numbers "
                             "with 0 <= first <= last, e.g. graph.rounds=[0,2]")
        window = (int(values[0]), int(values[1]))
    types: tuple[str, ...] = ()
    if mbti is not None:
        values = list(mbti) if OmegaConf.is_list(mbti) or isinstance(mbti, list | tuple) else [mbti]
        types = tuple(str(v).upper() for v in values)
        unknown = [t for t in types if t not in MBTI_TYPES]
        if unknown or not types:
            raise UsageError(f"graph.mbti={values} is invalid: allowed are MBTI types, "
                             "e.g. graph.mbti=[INTJ,ENFP]")
    return GraphFilter(window, types)


def run_folder(value: object) -> Path:
    """The folder of ``run=``: it must hold a run's episodes.sqlite."""
    if value is None or not str(value).strip():
        raise UsageError("run is missing: give run=<run folder>")
    folder = Path(to_absolute_path(str(value))).expanduser()
    if not (folder / "episodes.sqlite").is_file():
        raise UsageError(f"run={value}: no Salon run there (missing episodes.sqlite); give a run folder")
    return folder


def load_graph(folder: Path, chosen: GraphFilter) -> tuple[nx.Graph, dict[str, Episode]]:
    """The run's graph after the filter, and its episodes by id."""
    characters = folder / "characters.jsonl"
    personas = load_bank(characters) if characters.is_file() else []
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    try:
        episodes = [e for e in store.iter_episodes()
                    if chosen.rounds is None or chosen.rounds[0] <= e.round <= chosen.rounds[1]]
    finally:
        store.close()
    graph = build_graph(personas, episodes)
    if chosen.mbti:
        keep = [n for n, t in graph.nodes(data="mbti", default="") if t in chosen.mbti]
        graph = graph.subgraph(keep).copy()
    kept = {i for _, _, ids in graph.edges(data="episode_ids", default="") for i in ids.split(",") if i}
    return graph, {e.id: e for e in episodes if e.id in kept}


def summary_text(graph: nx.Graph, chosen: GraphFilter, episodes: int) -> str:
    lines = [f"salon: interaction graph ({episodes} episodes; filter: {chosen.describe()})"]
    for name, value in graph_metrics(graph).items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"  {name:<22} {shown}")
    return "\n".join(lines)


def save_gexf(graph: nx.Graph, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_gexf(graph, path)
    return path



def view_data(graph: nx.Graph, episodes: dict[str, Episode], seed: int) -> dict[str, Any]:
    """Everything the page draws: positioned nodes, styled edges, episodes by id, the legend."""
    positions = _positions(graph, seed)
    types = sorted({t for _, t in graph.nodes(data="mbti", default="")},
                   key=lambda t: (t not in MBTI_TYPES, t))
    return {
        "nodes": [_node(graph, n, positions[n]) for n in graph.nodes],
        "edges": _edges(graph),
        "episodes": {i: _episode(e) for i, e in episodes.items()},
        "legend": [{"mbti": t or "unknown", "colour": to_hex(mbti_colour(t))} for t in types],
        "metrics": {k: (None if isinstance(v, float) and np.isnan(v) else v)
                    for k, v in graph_metrics(graph).items()},
        "canvas": list(CANVAS),
        "score_range": _score_range(graph),
    }


def _score_range(graph: nx.Graph) -> list[float | None]:
    scores = [float(d) for _, _, d in graph.edges(data="mean_overall") if d is not None]
    return [min(scores), max(scores)] if scores else [None, None]


def _positions(graph: nx.Graph, seed: int) -> dict[str, tuple[float, float]]:
    if graph.number_of_nodes() == 0:
        return {}
    raw = nx.spring_layout(graph, seed=seed, weight="episodes",
                           iterations=50 if graph.number_of_nodes() <= 200 else 20)
    points = np.array([raw[n] for n in graph.nodes], dtype=float).reshape(-1, 2)
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    span[span < 1e-9] = 1.0
    scaled = MARGIN + (points - low) / span * (np.array(CANVAS) - 2 * MARGIN)
    if len(points) == 1:
        scaled[:] = np.array(CANVAS) / 2
    return {n: (round(float(x), 1), round(float(y), 1))
            for n, (x, y) in zip(graph.nodes, scaled, strict=True)}


def _node(graph: nx.Graph, name: str, position: tuple[float, float]) -> dict[str, Any]:
    data = graph.nodes[name]
    return {"name": name, "id": data.get("id", ""), "mbti": data.get("mbti", ""), "job": data.get("job", ""),
            "x": position[0], "y": position[1], "colour": to_hex(mbti_colour(data.get("mbti", ""))),
            "episodes": int(sum(d for _, _, d in graph.edges(name, data="episodes", default=0)))}


def _edges(graph: nx.Graph) -> list[dict[str, Any]]:
    scores = [d["mean_overall"] for _, _, d in graph.edges(data=True) if "mean_overall" in d]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    norm = Normalize(low - 0.5, high + 0.5) if high - low < 1e-9 else Normalize(low, high)
    edges = []
    for a, b, data in graph.edges(data=True):
        mean = data.get("mean_overall")
        share = float(norm(mean)) if mean is not None else 0.0
        edges.append({"source": a, "target": b, "episodes": int(data.get("episodes", 0)),
                      "mean": None if mean is None else round(float(mean), 3),
                      "width": round(1.0 + 5.0 * share, 2) if mean is not None else 1.0,
                      "colour": to_hex(colormaps["viridis"](share)) if mean is not None else "#c8c8c8",
                      "ids": [i for i in str(data.get("episode_ids", "")).split(",") if i]})
    return edges


def _episode(episode: Episode) -> dict[str, Any]:
    lines = []
    for turn in episode.turns[:FIRST_LINES]:
        text = f"(failed turn: {turn.error})" if turn.failed else " ".join(turn.text.split())
        lines.append({"speaker": turn.speaker, "text": text[:LINE_LIMIT]})
    return {"round": episode.round, "roles": episode.roles, "turns": len(episode.turns),
            "overall": round(episode.scores.overall, 3) if episode.scores and episode.scores.rated else None,
            "stop": episode.stop_reason, "first": lines}


def write_html(path: Path, graph: nx.Graph, episodes: dict[str, Episode], *, title: str, subtitle: str,
               seed: int) -> Path:
    """The interactive page: the template beside this module with the data inlined as JSON."""
    data = view_data(graph, episodes, seed)
    # JSON inside <script>: escaping <, > and & keeps any episode text from closing the element.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")
    template = TEMPLATE.read_text(encoding="utf-8")
    page = template.replace("{{TITLE}}", _escape(title)).replace("{{SUBTITLE}}", _escape(subtitle)) \
        .replace("{{DATA}}", payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

