"""task=compare: a sweep's runs (real SQLite stores with hand-made episodes, and one real smoke
sweep) aggregated per policy into compare.md and compare.png; an empty sweep is one line, exit 2."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agents.bank import load_bank, save_bank
from agents.persona import Persona
from core.errors import UsageError
from core.records import Episode, Scores, Turn
from core.stats import mean_ci
from environment.compare import find_runs, load_run, policy_label, summarise, sweep_folder, write_comparison
from environment.store import SQLiteEpisodeStore
from tests.conftest import ROOT, run_py

BANK = load_bank(ROOT / "agents" / "data" / "bank.jsonl")
TARGETS = {"random": "matching.policies.RandomPairing", "homophily": "matching.preference.HomophilyPairing",
           "bandit": "matching.bandit.BanditPairing"}


def episode(episode_id: str, round_index: int, a: Persona, b: Persona, overall: float) -> Episode:
    scores = Scores({"naturalness": overall - 0.5, "mood_improved": math.nan},
                    {"naturalness": "", "mood_improved": ""}, overall)
    return Episode(episode_id, round_index, (a.name, b.name), {a.name: a.facts, b.name: b.facts},
                   {a.name: "seeker", b.name: "supporter"},
                   (Turn(a.name, f"Hi {b.name}, I had a rough week."), Turn(b.name, "Tell me about it.")),
                   "test", character_ids={a.name: a.id, b.name: b.id}, scores=scores)


def write_run(folder: Path, policy: str, seed: int, pairs: list[list[tuple[int, int, float]]],
              personas: list[Persona], hydra: bool = True, overrides: tuple[str, ...] = ()) -> Path:
    """A run folder as simulate leaves it: config.yaml, characters.jsonl, episodes.sqlite (and
    Hydra's .hydra/ records); ``pairs[r]`` lists round r's (a, b, overall)."""
    folder.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"seed": seed, "matching": {"_target_": TARGETS[policy]}}),
                   folder / "config.yaml")
    save_bank(personas, folder / "characters.jsonl")
    if hydra:
        (folder / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": {"matching": policy}}}}),
                       folder / ".hydra" / "hydra.yaml")
        OmegaConf.save(OmegaConf.create([f"matching={policy}", f"seed={seed}", *overrides]),
                       folder / ".hydra" / "overrides.yaml")
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    for r, round_pairs in enumerate(pairs):
        for i, (a, b, overall) in enumerate(round_pairs):
            store.append(episode(f"r{r:03d}-e{i:03d}", r, personas[a], personas[b], overall))
    store.close()
    return folder


SCHEDULES = {
    "random": [[(0, 1, 3.0), (2, 3, 2.0)], [(0, 2, 3.5), (1, 3, 2.5)]],
    "homophily": [[(0, 1, 4.0), (2, 3, 3.0)], [(0, 1, 4.5), (2, 3, 3.5)]],
}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for n, (policy, seed) in enumerate((p, s) for p in SCHEDULES for s in (1, 2)):
        shifted = [[(a, b, v + 0.25 * (seed - 1)) for a, b, v in r] for r in SCHEDULES[policy]]
        write_run(root / f"{n}_matching={policy},seed={seed}", policy, seed, shifted, BANK[:4])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_compare_aggregates_per_policy_over_episodes_seeds_and_graphs(sweep: Path, tmp_path: Path) -> None:
    summaries = summarise([load_run(f) for f in find_runs(sweep_folder(str(sweep)))])
    assert [s.policy for s in summaries] == ["random", "homophily"]
    random, homophily = summaries
    assert [r.seed for r in random.runs] == [1, 2]
    pooled = [3.0, 2.0, 3.5, 2.5, 3.25, 2.25, 3.75, 2.75]
    assert random.over_episodes() == pytest.approx(mean_ci(pooled))
    assert random.over_seeds() == pytest.approx(mean_ci([2.75, 3.0]))
    assert random.over_episodes("naturalness")[0] == pytest.approx(2.375)
    assert math.isnan(random.over_episodes("mood_improved")[0])
    assert homophily.graph("mean_partners") == pytest.approx((1.0, 0.0, 2))
    assert random.graph("mean_partners")[0] == pytest.approx(2.0)
    text = write_comparison(tmp_path / "out" / "compare.md", sweep, summaries)
    assert "| random | 2 | 8 | 2.88 ± 0.51 | 2.38 ± 0.51 | n/a |" in text
    assert "| homophily | 2 | 2 | 3.88 ± 1.59 |" in text
    for heading in ("over episodes", "over seeds", "Interaction graph", "MBTI assortativity",
                    "distinct partners per character"):
        assert heading in text


def test_compare_task_writes_markdown_and_png(sweep: Path, tmp_path: Path, capsys) -> None:
    from environment.tasks.compare import run as compare_task

    cfg = OmegaConf.create({"runs": str(sweep), "paths": {"run_dir": str(tmp_path / "out")}})
    compare_task(cfg)
    png = (tmp_path / "out" / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert "homophily" in (tmp_path / "out" / "compare.md").read_text()
    assert "compared 4 runs of 2 policies" in capsys.readouterr().out


def test_policy_label_falls_back_to_the_class_and_shows_matching_overrides(tmp_path: Path) -> None:
    bare = write_run(tmp_path / "a", "homophily", 0, [[(0, 1, 3.0)]], BANK[:2], hydra=False)
    tuned = write_run(tmp_path / "b", "bandit", 0, [[(0, 1, 3.0)]], BANK[:2],
                      overrides=("matching.algorithm=thompson",))
    assert policy_label(bare, OmegaConf.load(bare / "config.yaml")) == "homophily"
    assert policy_label(tuned, OmegaConf.load(tuned / "config.yaml")) == "bandit (algorithm=thompson)"


def test_sweep_without_runs_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "0_matching=random").mkdir(parents=True)
    for value in (str(tmp_path / "empty"), str(tmp_path / "missing"), ""):
        with pytest.raises(UsageError, match="runs"):
            sweep_folder(value)


def salon(cwd_tmp: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess:
    return run_py(*arguments, timeout=timeout)


def test_empty_sweep_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = salon(tmp_path, "task=compare", f"runs={tmp_path / 'empty'}",
                   f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "no runs there" in result.stderr


def test_a_real_smoke_sweep_compares(tmp_path: Path) -> None:
    """The issue's sweep at its smallest (one job: a model load per job is the cost): the
    bandit on the smoke society, learning from the critic through the Society's observe."""
    sweep_dir = tmp_path / "sweep"
    ran = salon(tmp_path, "-m", "matching=bandit", "seed=1", "experiment=smoke",
                "simulation.progress=false", f"hydra.sweep.dir={sweep_dir}", timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    runs = find_runs(sweep_dir)
    assert len(runs) == 1 and runs[0].name.startswith("0_")
    for run in runs:
        assert {"config.yaml", "episodes.sqlite", "characters.jsonl", "graph.graphml"} <= {
            p.name for p in run.iterdir()}
    compared = salon(tmp_path, "task=compare", f"runs={sweep_dir}", f"hydra.run.dir={tmp_path / 'cmp'}",
                     timeout=120)
    assert compared.returncode == 0, compared.stderr[-3000:]
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| bandit | 1 | 2 |" in text  # 4 characters, 1 round: 2 episodes
    assert (tmp_path / "cmp" / "compare.png").is_file()
