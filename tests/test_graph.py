"""Tests of the interaction graph: building, metrics, GraphML and drawing (no models)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from matplotlib.image import imread

from agents.persona import Persona
from core.records import Episode, Scores, Turn
from environment.graph import (
    build_graph,
    draw_graph,
    graph_metrics,
    save_graphml,
    update_graph,
)

pytestmark = pytest.mark.fast

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def persona(name: str, mbti: str = "", age: int | None = None) -> Persona:
    return Persona(id=f"id-{name}", name=name, facts=("I like tea.",), mbti=mbti, age=age,
                   job="baker" if age else "")


def episode(eid: str, a: str, b: str, round_: int = 0, overall: float | None = None) -> Episode:
    scores = None if overall is None else Scores({"mood": overall}, {"mood": ""}, overall)
    return Episode(
        id=eid, round=round_, participants=(a, b), personas={}, roles={a: "peer", b: "peer"},
        turns=(Turn(a, "Hello."), Turn(b, "Hi.")), model="test", scores=scores,
    )


@pytest.fixture
def personas() -> list[Persona]:
    return [persona("Ann", "INTJ", 30), persona("Bob", "ENFP"), persona("Cy", "INTJ")]


def test_nodes_carry_persona_attributes(personas: list[Persona]) -> None:
    graph = build_graph(personas, [])
    assert list(graph.nodes) == ["Ann", "Bob", "Cy"]
    ann, bob = graph.nodes["Ann"], graph.nodes["Bob"]
    assert ann == {"id": "id-Ann", "name": "Ann", "mbti": "INTJ", "gender": "", "age": 30,
                   "job": "baker", "region": ""}
    assert bob["age"] == -1 and bob["job"] == ""


def test_edge_attributes_count_mean_and_last_round(personas: list[Persona]) -> None:
    episodes = [
        episode("e1", "Ann", "Bob", 2, overall=3.0),
        episode("e2", "Bob", "Ann", 5),
        episode("e3", "Ann", "Bob", 4, overall=5.0),
        episode("e4", "Bob", "Cy", 1),
    ]
    graph = build_graph(personas, episodes)
    edge = graph.edges["Ann", "Bob"]
    assert edge["episodes"] == 3 and edge["scored"] == 2
    assert edge["mean_overall"] == pytest.approx(4.0)
    assert edge["last_round"] == 5
    assert edge["episode_ids"] == "e1,e2,e3"
    unscored = graph.edges["Bob", "Cy"]
    assert unscored["episodes"] == 1 and unscored["scored"] == 0
    assert "mean_overall" not in unscored


def test_update_graph_is_incremental_and_skips_repeats(personas: list[Persona]) -> None:
    graph = build_graph(personas, [episode("e1", "Ann", "Bob", 0, 2.0)])
    update_graph(graph, episode("e2", "Ann", "Bob", 1, 4.0))
    update_graph(graph, episode("e2", "Ann", "Bob", 1, 4.0))
    edge = graph.edges["Ann", "Bob"]
    assert edge["episodes"] == 2 and edge["mean_overall"] == pytest.approx(3.0)


def test_episode_ids_with_commas_are_rejected(personas: list[Persona]) -> None:
    with pytest.raises(ValueError, match="comma"):
        build_graph(personas, [episode("a,b", "Ann", "Bob")])


def test_unknown_participants_become_nodes(personas: list[Persona]) -> None:
    stranger = episode("e1", "Ann", "Zed")
    stranger = Episode(**{**stranger.__dict__, "character_ids": {"Zed": "id-zed"}})
    graph = build_graph(personas, [stranger])
    assert graph.nodes["Zed"]["id"] == "id-zed"
    assert graph.nodes["Zed"]["mbti"] == "" and graph.nodes["Zed"]["age"] == -1


def test_duplicate_persona_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="Ann"):
        build_graph([persona("Ann"), persona("Ann")], [])


def test_metrics_of_a_triangle() -> None:
    people = [persona("A", "INTJ"), persona("B", "ENFP"), persona("C", "ISTP")]
    graph = build_graph(people, [episode("1", "A", "B"), episode("2", "B", "C"),
                                 episode("3", "C", "A"), episode("4", "A", "B")])
    metrics = graph_metrics(graph)
    assert metrics["nodes"] == 3 and metrics["edges"] == 3
    assert metrics["density"] == pytest.approx(1.0)
    assert metrics["average_clustering"] == pytest.approx(1.0)
    assert metrics["connected_components"] == 1
    assert metrics["mean_partners"] == pytest.approx(2.0)
    assert metrics["mean_degree"] == pytest.approx(8 / 3)


def test_assortativity_is_nan_without_edges_or_with_one_type() -> None:
    people = [persona("A", "INTJ"), persona("B", "ENFP"), persona("C", "INTJ")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(graph_metrics(build_graph(people, []))["mbti_assortativity"])
        one_type = build_graph(people, [episode("1", "A", "C")])
        assert math.isnan(graph_metrics(one_type)["mbti_assortativity"])


def test_assortativity_of_same_and_mixed_type_edges() -> None:
    people = [persona("A", "INTJ"), persona("B", "INTJ"), persona("C", "ENFP"),
              persona("D", "ENFP")]
    same = build_graph(people, [episode("1", "A", "B"), episode("2", "C", "D")])
    assert graph_metrics(same)["mbti_assortativity"] == pytest.approx(1.0)
    mixed = build_graph(people, [episode("1", "A", "C"), episode("2", "B", "D")])
    assert graph_metrics(mixed)["mbti_assortativity"] == pytest.approx(-1.0)


def test_metrics_of_an_empty_graph() -> None:
    metrics = graph_metrics(nx.Graph())
    assert metrics["nodes"] == 0 and metrics["connected_components"] == 0
    assert math.isnan(metrics["density"]) and math.isnan(metrics["mean_degree"])


def test_graphml_round_trip(tmp_path: Path, personas: list[Persona]) -> None:
    graph = build_graph(personas, [episode("e1", "Ann", "Bob", 3, 4.5),
                                   episode("e2", "Ann", "Bob", 4), episode("e3", "Bob", "Cy")])
    path = save_graphml(graph, tmp_path / "out" / "graph.graphml")
    loaded = nx.read_graphml(path)
    assert dict(loaded.nodes(data=True)) == dict(graph.nodes(data=True))
    edge = loaded.edges["Ann", "Bob"]
    assert edge == {"episodes": 2, "scored": 1, "mean_overall": 4.5, "last_round": 4,
                    "episode_ids": "e1,e2"}
    assert "mean_overall" not in loaded.edges["Bob", "Cy"]


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    assert pixels.ndim == 3 and np.ptp(pixels) > 0


def test_draw_small_graph(tmp_path: Path, personas: list[Persona]) -> None:
    graph = build_graph(personas, [episode("e1", "Ann", "Bob", 0, 4.0),
                                   episode("e2", "Bob", "Cy", 0, 2.0), episode("e3", "Ann", "Cy")])
    _check_png(draw_graph(graph, tmp_path / "graph.png", seed=1))


def test_draw_is_deterministic(tmp_path: Path, personas: list[Persona]) -> None:
    graph = build_graph(personas, [episode("e1", "Ann", "Bob", 0, 4.0)])
    first = draw_graph(graph, tmp_path / "a.png", seed=7).read_bytes()
    assert draw_graph(graph, tmp_path / "b.png", seed=7).read_bytes() == first


def test_draw_without_edges(tmp_path: Path, personas: list[Persona]) -> None:
    _check_png(draw_graph(build_graph(personas, []), tmp_path / "graph.png", seed=0))


def test_draw_large_graph(tmp_path: Path) -> None:
    people = [persona(f"p{i}", ("INTJ", "ENFP", "ISFJ", "")[i % 4]) for i in range(1000)]
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 1000, size=(600, 2))
    episodes = [episode(str(k), f"p{a}", f"p{b}", 0, float(k % 5) + 1)
                for k, (a, b) in enumerate(pairs) if a != b]
    _check_png(draw_graph(build_graph(people, episodes), tmp_path / "graph.png", seed=0))


def test_draw_empty_graph(tmp_path: Path) -> None:
    assert draw_graph(nx.Graph(), tmp_path / "empty.png", seed=0).read_bytes()[:8] == PNG_MAGIC
