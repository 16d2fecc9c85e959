"""Tests of the Markdown run report and the mean/CI helper (no models)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agents.persona import Persona
from core.records import Episode, Scores, Turn
from core.stats import mean_ci
from environment.graph import build_graph
from environment.report import write_report

pytestmark = pytest.mark.fast


def make_episode(eid: str, values: dict[str, float] | None, overall: float = 0.0,
                 stop: str = "max_turns", failed: bool = False) -> Episode:
    scores = None if values is None else Scores(values, dict.fromkeys(values, ""), overall)
    second = Turn("Bob", "", failed=True, error="unparsable") if failed else Turn(
        "Bob", f"Reply in {eid}.", prompt_tokens=10, completion_tokens=5)
    turns = (Turn("Ann", f"Opening of {eid}.", prompt_tokens=20, completion_tokens=7), second,
             Turn("Ann", f"Third turn of {eid}."))
    return Episode(id=eid, round=1, participants=("Ann", "Bob"), personas={},
                   roles={"Ann": "seeker", "Bob": "supporter"}, turns=turns, model="test",
                   stop_reason=stop, scores=scores)


@pytest.fixture
def episodes() -> list[Episode]:
    return [
        make_episode("good", {"mood": 3.0, "engaged": math.nan}, overall=4.5),
        make_episode("bad", {"mood": 4.0, "engaged": 2.0}, overall=1.5, stop="goodbye"),
        make_episode("mid", {"mood": 5.0, "engaged": 4.0}, overall=3.0, failed=True),
        make_episode("unscored", None),
    ]


def test_mean_ci_of_known_values() -> None:
    mean, half_width, n = mean_ci([3, 4, 5])
    assert (round(mean, 2), round(half_width, 2), n) == (4.0, 2.48, 3)


def test_mean_ci_skips_nan_and_handles_small_samples() -> None:
    assert mean_ci([2.0, math.nan, 4.0])[::2] == (3.0, 2)
    mean, half_width, n = mean_ci([7.0])
    assert mean == 7.0 and math.isnan(half_width) and n == 1
    mean, half_width, n = mean_ci([])
    assert math.isnan(mean) and math.isnan(half_width) and n == 0
    assert mean_ci([2.0, 2.0, 2.0])[1] == 0.0


def write(tmp_path: Path, episodes: list[Episode], wall: float = 10.0) -> str:
    personas = [Persona(id="a", name="Ann", facts=("I sing.",), mbti="INFP"),
                Persona(id="b", name="Bob", facts=("I run.",), mbti="ESTJ")]
    return write_report(tmp_path / "report.md", title="Test run",
                        config_summary={"matching": "random", "seed": "3"},
                        episodes=episodes, graph=build_graph(personas, episodes),
                        wall_seconds=wall)


def test_report_is_written_and_returned(tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes)
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == text
    assert text.startswith("# Test run")
    assert "| matching | random |" in text and "| seed | 3 |" in text


def test_report_counts_episodes_failures_and_stop_reasons(
        tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes)
    assert "episodes: 4 (3 scored)" in text
    assert "failed turns: 1" in text
    assert "| max_turns | 3 |" in text and "| goodbye | 1 |" in text


def test_report_scores_per_dimension_with_ci(tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes)
    assert "| mood | 4.00 | 2.48 | 3 |" in text
    engaged = mean_ci([2.0, 4.0])
    assert f"| engaged | 3.00 | {engaged[1]:.2f} | 2 |" in text
    assert "| **overall** | 3.00 | 3.73 | 3 |" in text


def test_report_ci_is_na_below_two_values(tmp_path: Path) -> None:
    text = write(tmp_path, [make_episode("only", {"mood": 3.0}, overall=3.0)])
    assert "| mood | 3.00 | n/a | 1 |" in text


def test_report_tokens_and_rate(tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes, wall=4.0)
    # 4 episodes x 20 prompt tokens + 3 successful replies x 10; completions 4 x 7 + 3 x 5.
    assert "| prompt tokens | 110 |" in text
    assert "| completion tokens | 43 |" in text
    assert "| total tokens | 153 |" in text
    assert "| completion tokens/s (wall) | 10.75 |" in text
    assert "4.0 s" in text


def test_report_graph_metrics(tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes)
    assert "| nodes | 2 |" in text and "| edges | 1 |" in text
    assert "| density | 1.000 |" in text
    assert "| mbti_assortativity | -1.000 |" in text


def test_report_best_and_worst_episode(tmp_path: Path, episodes: list[Episode]) -> None:
    text = write(tmp_path, episodes)
    assert "### Best: `good`" in text and "overall 4.50" in text
    assert "### Worst: `bad`" in text and "overall 1.50" in text
    assert "> **Ann:** Opening of good." in text and "> **Bob:** Reply in good." in text
    assert "Third turn of good." not in text


def test_report_without_scores_or_episodes(tmp_path: Path) -> None:
    text = write(tmp_path, [], wall=0.0)
    assert "episodes: 0 (0 scored)" in text
    assert "No episode was scored." in text
    assert "| completion tokens/s (wall) | n/a |" in text


def test_report_into_a_folder(tmp_path: Path) -> None:
    text = write_report(tmp_path, title="Folder", config_summary={}, episodes=[],
                        graph=build_graph([], []), wall_seconds=1.0)
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == text
