"""Every run writes its episodes as a Hugging Face `datasets` folder with a dataset card, and
`task=export` writes it for an older run; both through run.py, read back with `datasets`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT


def salon(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "run.py", *arguments], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    result = salon("experiment=smoke", "simulation.progress=false", f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def test_a_run_folder_holds_its_episodes_as_a_dataset(smoke_run: Path) -> None:
    from datasets import load_from_disk

    dataset = load_from_disk(str(smoke_run / "dataset"))
    exported = [json.loads(line) for line in (smoke_run / "episodes.jsonl").read_text().splitlines()]
    assert dataset["id"] == [e["id"] for e in exported] and len(dataset) == 2
    assert [[t["text"] for t in row] for row in dataset["turns"]] == \
        [[t["text"] for t in e["turns"]] for e in exported]
    assert dataset["overall"] == [e["scores"]["overall"] for e in exported]
    assert json.loads(dataset[0]["personas"]) == exported[0]["personas"]
    card = (smoke_run / "dataset" / "README.md").read_text()
    assert "episodes: 2" in card and "SmolLM2-135M-Instruct" in card and "critic weights" in card
    assert "```yaml" in card and "society:" in card


def test_task_export_writes_the_dataset_of_an_older_run(smoke_run: Path, tmp_path: Path) -> None:
    from datasets import load_from_disk

    older = tmp_path / "older"
    shutil.copytree(smoke_run, older)
    shutil.rmtree(older / "dataset")
    result = salon("task=export", f"run={older}", f"hydra.run.dir={tmp_path / 'export'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 episodes exported" in result.stdout
    assert load_from_disk(str(older / "dataset"))["id"] == load_from_disk(str(smoke_run / "dataset"))["id"]


def test_task_export_of_a_folder_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    result = salon("task=export", f"run={tmp_path}", f"hydra.run.dir={tmp_path / 'export'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"salon: error: run={tmp_path}: no Salon run there (missing episodes.sqlite); give a run folder"]
