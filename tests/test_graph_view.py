"""task=graph: the summary, the GEXF file and the interactive HTML view of a run (a real SQLite
store with hand-made episodes), opened in headless Chromium; filters by round and MBTI type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import networkx as nx
import pytest
from omegaconf import OmegaConf

from core.errors import UsageError
from environment.graph_view import GraphFilter, load_graph, parse_filter, run_folder
from environment.store import SQLiteEpisodeStore
from environment.tasks.graph import run as graph_task
from tests.test_compare import BANK, episode, write_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PERSONAS = [BANK[i] for i in (0, 4, 8, 12, 16, 20)]  # ESTJ, ESTP, ESFJ, ESFP, ENTJ, ENTP
ROUNDS = [[(0, 1, 3.0), (2, 3, 2.0), (4, 5, 4.0)],
          [(0, 1, 4.0), (2, 4, 3.0), (3, 5, 2.5)],
          [(0, 2, 1.5), (1, 3, 3.5), (4, 5, 4.5)]]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = write_run(tmp_path / "run", "random", 0, ROUNDS, PERSONAS)
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    risky = episode("r003-e000", 3, PERSONAS[0], PERSONAS[5], 2.0)
    turns = (dataclasses.replace(risky.turns[0], text="I wrote </script><b>bold</b> & left."), risky.turns[1])
    store.append(dataclasses.replace(risky, turns=turns))  # model output must not break the page
    store.close()
    return folder


def settings(run: Path, out: Path, **graph) -> OmegaConf:
    return OmegaConf.create({"run": str(run), "seed": 0, "paths": {"run_dir": str(out)},
                             "graph": {"rounds": None, "mbti": None, "layout_seed": 0, **graph}})


def test_graph_task_prints_summary_and_writes_gexf_and_html(run: Path, tmp_path: Path, capsys) -> None:
    graph_task(settings(run, tmp_path / "out"))
    printed = capsys.readouterr().out
    assert "10 episodes; filter: none" in printed and "mbti_assortativity" in printed
    gexf = nx.read_gexf(tmp_path / "out" / "graph.gexf")
    assert gexf.number_of_nodes() == 6 and gexf.number_of_edges() == 8
    assert (tmp_path / "out" / "graph.html").read_text().count("</script>") == 2  # only our own two


def test_filters_keep_rounds_and_types(run: Path) -> None:
    graph, episodes = load_graph(run, GraphFilter(rounds=(1, 2)))
    assert sorted(episodes) == [f"r{r:03d}-e{i:03d}" for r in (1, 2) for i in range(3)]
    assert graph.number_of_nodes() == 6 and graph.edges[PERSONAS[0].name, PERSONAS[1].name]["episodes"] == 1
    graph, episodes = load_graph(run, GraphFilter(mbti=("ESTJ", "ESTP", "ESFJ")))
    assert sorted(graph.nodes) == sorted(p.name for p in PERSONAS[:3])
    assert sorted(episodes) == ["r000-e000", "r001-e000", "r002-e000"]


def test_bad_filters_and_folders_are_usage_errors(tmp_path: Path) -> None:
    assert parse_filter([0, 2], ["intj"]) == GraphFilter((0, 2), ("INTJ",))
    for rounds in ([2, 1], [0], [-1, 3], "x"):
        with pytest.raises(UsageError, match=r"graph\.rounds"):
            parse_filter(rounds, None)
    with pytest.raises(UsageError, match=r"graph\.mbti"):
        parse_filter(None, ["INTX"])
    with pytest.raises(UsageError, match="no Salon run"):
        run_folder(str(tmp_path))


def test_html_view_in_headless_chromium_shows_nodes_and_edge_episodes(run: Path, tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    graph_task(settings(run, tmp_path / "out"))
    graph, _ = load_graph(run, GraphFilter())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((tmp_path / "out" / "graph.html").as_uri())
            assert page.locator("circle.node").count() == graph.number_of_nodes()
            assert page.locator("line.edge-hit").count() == graph.number_of_edges()
            _click_edge(page, PERSONAS[0].name, PERSONAS[1].name)
            items = page.locator("#episode-list li.episode")
            assert items.count() == 2
            first = items.nth(0).inner_text()
            assert "r000-e000" in first and "Tell me about it." in first
            _click_edge(page, PERSONAS[0].name, PERSONAS[5].name)
            assert "I wrote </script><b>bold</b> & left." in page.locator("#details").inner_text()
            assert page.locator("#details b").count() == 0  # shown as text, never as markup
            page.locator(f'circle.node[data-name="{PERSONAS[5].name}"]').click()
            assert page.locator("#details li").count() == 3  # partners of the ENTP character
            page.screenshot(path=str(tmp_path / "graph.png"))
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "graph.png").stat().st_size > 10_000


def _click_edge(page, a: str, b: str) -> None:
    """Click the edge a-b with the mouse, as a user would: at a point along it where no other
    edge crosses (the page says which edge it selected)."""
    centres = []
    for name in (a, b):
        box = page.locator(f'circle.node[data-name="{name}"]').bounding_box()
        centres.append((box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    (ax, ay), (bx, by) = centres
    for share in (0.5, 0.35, 0.65, 0.25, 0.75):
        page.mouse.click(ax + share * (bx - ax), ay + share * (by - ay))
        header = page.locator("#details p").first.inner_text()
        if header.startswith((f"{a} — {b}:", f"{b} — {a}:")):
            return
    raise AssertionError(f"could not click the edge {a} — {b}")
