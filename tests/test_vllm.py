"""model=vllm through run.py. vLLM runs on GPU machines; where it is not installed, the switch
must still say so in one line before any work (and the real run is skipped)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_py

salon = functools.partial(run_py, timeout=900)


@pytest.mark.skipif(shutil.which("vllm") is not None, reason="vLLM is installed: the real run is tested")
def test_model_vllm_without_vllm_is_one_line_before_any_work(tmp_path: Path) -> None:
    result = salon("model=vllm", "model.path=/models/any", "experiment=smoke",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "salon: error: model.path='/models/any' is invalid: vLLM is not installed here: `pip install vllm` "
        "on a GPU machine, then model=vllm"]
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(shutil.which("vllm") is None, reason="vLLM is not installed (GPU machines)")
def test_a_simulation_on_vllm(tmp_path: Path, cache_dir: Path) -> None:
    """The embedded model's dequantised folder, served by vLLM with prefix caching."""
    folder = next(cache_dir.glob("*-safetensors"))
    result = salon("model=vllm", f"model.path={folder}", "experiment=smoke", "simulation.progress=false",
                   f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 2 and all(t["text"] for e in episodes for t in e["turns"])
    assert "vllm on 127.0.0.1" in (tmp_path / "report.md").read_text()
