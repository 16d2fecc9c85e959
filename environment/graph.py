"""The interaction graph: who talked with whom, how often and how well.

Nodes are keyed by character name (unique within a society) and carry the persona's
profile scalars. Undirected edges join the two participants of each episode and carry:

- ``episodes``: how many episodes the pair had;
- ``scored``: how many of them carry critic scores;
- ``mean_overall``: the mean of ``scores.overall`` over the scored episodes. The attribute
  is *absent* while no episode of the pair is scored: 0 would read as a real (bad) score
  and NaN is not portable to every GraphML reader;
- ``last_round``: the latest round the pair met in;
- ``episode_ids``: the episode ids, comma-joined (GraphML only holds scalars).

Every attribute is a GraphML-safe scalar, so ``save_graphml`` writes the graph as is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from agents.persona import MBTI_TYPES, Persona
from core.records import Episode

# matplotlib is imported where a picture is drawn: every task module imports this one (through
# the society), and a usage error, which imports the task to run its checks, then need not pay
# for it (about 0.4 s of a 2.7 s error)
if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

MISSING_AGE = -1
LABEL_LIMIT = 60
UNKNOWN_COLOUR = "#ffffff"
# tab20 indices for the 16 types: dark shades first, the greys (14, 15) left out so no type
# looks like another.
TYPE_PALETTE = (0, 2, 4, 6, 8, 10, 12, 16, 18, 1, 3, 5, 7, 9, 11, 13)
UNSCORED_EDGE_COLOUR = "#d0d0d0"


def node_attributes(persona: Persona) -> dict[str, str | int]:
    """The GraphML-safe node attributes of a persona ("" / -1 for missing values)."""
    return {
        "id": persona.id,
        "name": persona.name,
        "mbti": persona.mbti,
        "gender": persona.gender,
        "age": persona.age if persona.age is not None else MISSING_AGE,
        "job": persona.job,
        "region": persona.region,
    }


def _empty_attributes(name: str, persona_id: str = "") -> dict[str, str | int]:
    attributes = dict.fromkeys(("id", "name", "mbti", "gender", "job", "region"), "")
    return {**attributes, "id": persona_id, "name": name, "age": MISSING_AGE}


def build_graph(personas: Sequence[Persona], episodes: Iterable[Episode]) -> nx.Graph:
    """A graph with one node per persona and the edges of ``episodes`` (see the module doc)."""
    graph = nx.Graph()
    for persona in personas:
        if persona.name in graph:
            raise ValueError(f"two personas are named {persona.name!r}; names must be unique")
        graph.add_node(persona.name, **node_attributes(persona))
    for episode in episodes:
        update_graph(graph, episode)
    return graph


def update_graph(graph: nx.Graph, episode: Episode) -> None:
    """Add one episode to ``graph`` in place.

    Participants unknown to the graph become nodes with empty attributes (their persona id
    from ``episode.character_ids`` when given). An episode already on the edge is skipped,
    so replaying a store after a resumed run does not count it twice.
    """
    if "," in episode.id:
        raise ValueError(f"episode id {episode.id!r} contains a comma; episode_ids joins on it")
    for name in episode.participants:
        if name not in graph:
            graph.add_node(name, **_empty_attributes(name, episode.character_ids.get(name, "")))
    first, second = episode.participants
    if not graph.has_edge(first, second):
        graph.add_edge(first, second, episodes=0, scored=0, last_round=episode.round,
                       episode_ids="")
    edge = graph.edges[first, second]
    ids = edge["episode_ids"].split(",") if edge["episode_ids"] else []
    if episode.id in ids:
        return
    edge["episodes"] += 1
    edge["last_round"] = max(edge["last_round"], episode.round)
    edge["episode_ids"] = ",".join([*ids, episode.id])
    if episode.scores is not None and episode.scores.rated:
        _add_score(edge, float(episode.scores.overall))


def _add_score(edge: dict[str, Any], overall: float) -> None:
    # A running mean keeps update_graph O(1) in the number of scored episodes.
    edge["scored"] += 1
    previous = edge.get("mean_overall", 0.0)
    edge["mean_overall"] = previous + (overall - previous) / edge["scored"]


def graph_metrics(graph: nx.Graph) -> dict[str, float]:
    """Summary numbers of the interaction graph.

    ``mean_degree`` counts episodes per character (edges weighted by ``episodes``);
    ``mean_partners`` counts distinct partners per character (the unweighted degree).
    Values undefined for the graph (e.g. clustering of an empty graph) are NaN.
    """
    n_nodes = graph.number_of_nodes()
    per_node = float(n_nodes) if n_nodes else math.nan
    weighted = sum(d for _, d in graph.degree(weight="episodes"))
    return {
        "nodes": n_nodes,
        "edges": graph.number_of_edges(),
        "density": nx.density(graph) if n_nodes > 1 else math.nan,
        "average_clustering": nx.average_clustering(graph) if n_nodes else math.nan,
        "mbti_assortativity": mbti_assortativity(graph),
        "mean_degree": weighted / per_node,
        "connected_components": nx.number_connected_components(graph),
        "mean_partners": 2 * graph.number_of_edges() / per_node,
    }


def mbti_assortativity(graph: nx.Graph) -> float:
    """MBTI assortativity over nodes with a known type; NaN when it is undefined.

    It is undefined without edges or when the edges' endpoints share a single type
    (networkx would divide by zero).
    """
    typed = graph.subgraph(n for n, mbti in graph.nodes(data="mbti", default="") if mbti)
    endpoint_types = {typed.nodes[n]["mbti"] for edge in typed.edges for n in edge}
    if len(endpoint_types) < 2:
        return math.nan
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(nx.attribute_assortativity_coefficient(typed, "mbti"))
    return value if math.isfinite(value) else math.nan


def save_graphml(graph: nx.Graph, path: str | Path) -> Path:
    """Write ``graph`` as GraphML (parent folders are created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(graph, path)
    return path


def draw_graph(graph: nx.Graph, path: str | Path, seed: int) -> Path:
    """Draw ``graph`` to a PNG: colour = MBTI type, edge width = episodes, edge colour = score.

    The spring layout is seeded, so the same graph and seed give the same picture.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axis_off()
    positions = _layout(graph, seed)
    _draw_edges(figure, axes, graph, positions)
    _draw_nodes(figure, axes, graph, positions)
    axes.set_title(f"Interaction graph: {graph.number_of_nodes()} characters, "
                   f"{graph.number_of_edges()} pairs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _layout(graph: nx.Graph, seed: int) -> dict[str, np.ndarray]:
    if graph.number_of_nodes() == 0:
        return {}
    # Fewer iterations on large graphs: the picture is a hairball either way, and it is 3x faster.
    iterations = 50 if graph.number_of_nodes() <= 200 else 20
    return nx.spring_layout(graph, seed=seed, weight="episodes", iterations=iterations)


def mbti_colour(mbti: str) -> tuple[float, float, float, float] | str:
    """A fixed colour per MBTI type (the same in every run); white when unknown."""
    if mbti not in MBTI_TYPES:
        return UNKNOWN_COLOUR
    from matplotlib import colormaps

    return colormaps["tab20"](TYPE_PALETTE[MBTI_TYPES.index(mbti)])


def _draw_nodes(figure: Figure, axes: Axes, graph: nx.Graph,
                positions: dict[str, np.ndarray]) -> None:
    from matplotlib.lines import Line2D

    nodes = list(graph.nodes)
    types = [graph.nodes[n].get("mbti", "") for n in nodes]
    size = 300 if len(nodes) <= LABEL_LIMIT else max(10, 6000 // max(len(nodes), 1))
    nx.draw_networkx_nodes(graph, positions, nodelist=nodes, ax=axes, node_size=size,
                           node_color=[mbti_colour(t) for t in types], linewidths=0.5,
                           edgecolors="#404040")
    if 0 < len(nodes) <= LABEL_LIMIT:
        nx.draw_networkx_labels(graph, positions, ax=axes, font_size=7)
    present = sorted(set(types), key=lambda t: (t not in MBTI_TYPES, t))
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor=mbti_colour(t),
                      markeredgecolor="#404040", label=t or "unknown") for t in present]
    if handles:
        figure.legend(handles=handles, title="MBTI", loc="outside right upper",
                      fontsize=8, title_fontsize=9, frameon=False)


def _draw_edges(figure: Figure, axes: Axes, graph: nx.Graph,
                positions: dict[str, np.ndarray]) -> None:
    from matplotlib.cm import ScalarMappable

    edges = list(graph.edges(data=True))
    if not edges:
        return
    counts = np.array([d.get("episodes", 1) for _, _, d in edges], dtype=float)
    widths = 0.5 + 3.5 * counts / counts.max()
    scores = [d.get("mean_overall") for _, _, d in edges]
    norm = _score_norm([s for s in scores if s is not None])
    mappable = ScalarMappable(norm=norm, cmap="viridis")
    colours = [UNSCORED_EDGE_COLOUR if s is None else mappable.to_rgba(s) for s in scores]
    nx.draw_networkx_edges(graph, positions, edgelist=[(u, v) for u, v, _ in edges], ax=axes,
                           width=widths.tolist(), edge_color=colours, alpha=0.8)
    if any(s is not None for s in scores):
        figure.colorbar(mappable, ax=axes, shrink=0.5, label="mean overall score",
                        location="bottom")


def _score_norm(scores: list[float]) -> Normalize:
    from matplotlib.colors import Normalize

    if not scores:
        return Normalize(0.0, 1.0)
    low, high = min(scores), max(scores)
    if high - low < 1e-9:  # one distinct score: widen so the colourbar has a range
        low, high = low - 0.5, high + 0.5
    return Normalize(low, high)
