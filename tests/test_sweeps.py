"""Sweeps through run.py: Hydra's multirun with the joblib launcher (`hydra/launcher=joblib`)
runs the sweep's jobs in parallel processes, each a whole Salon run in its own folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_py


def test_a_joblib_sweep_runs_each_policy_in_its_own_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_py("-m", "experiment=smoke", "matching=random,homophily", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", "simulation.progress=false", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    folders = sorted(p.parent for p in sweep.glob("*/episodes.jsonl"))
    assert len(folders) == 2
    assert folders[0].name.startswith("0_") and "matching=random" in folders[0].name
    assert folders[1].name.startswith("1_") and "matching=homophily" in folders[1].name
    for folder in folders:
        episodes = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
        assert len(episodes) == 2 and all(e["scores"] for e in episodes)
    launched = (sweep / "multirun.yaml").read_text()
    assert "JoblibLauncher" in launched  # the joblib launcher ran the sweep, not the basic one


def test_the_slurm_launcher_option_composes_into_submitit() -> None:
    """`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml) is submitit's SLURM launcher with
    Salon's defaults; there is no SLURM here to submit to, so only the composition is checked."""
    result = run_py("--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "submitit_launcher.SlurmLauncher" in result.stdout and "partition: gpu" in result.stdout
    assert "timeout_min: 240" in result.stdout
