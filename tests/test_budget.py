"""`simulation.budget` through run.py: a smoke run stops cleanly at its token budget, says so in
one line and in the report (with its ledger of tokens and cost per model), and `resume=` with
no limit finishes it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tests.conftest import run_py

salon = functools.partial(run_py, timeout=900)


def test_a_token_budget_stops_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stopped = salon("experiment=smoke", "simulation.rounds=4", "simulation.budget.tokens=1500",
                    "+simulation.budget.prices.SmolLM2-135M-Instruct=[1.0,2.0]", "simulation.progress=false",
                    f"hydra.run.dir={run}")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    lines = [x for x in stopped.stderr.splitlines() if x.startswith("salon: stopped at the budget")]
    assert len(lines) == 1 and "simulation.budget.tokens=1,500" in lines[0] and f"resume={run}" in lines[0]
    kept = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert 0 < len(kept) < 8  # 4 rounds of 2 episodes, stopped early
    spent = sum(t["prompt_tokens"] + t["completion_tokens"] for e in kept for t in e["turns"])
    assert spent >= 1500
    report = (run / "report.md").read_text()
    assert "| stopped | the token budget is spent" in report
    prompt = sum(t["prompt_tokens"] for e in kept for t in e["turns"])
    completion = sum(t["completion_tokens"] for e in kept for t in e["turns"])
    name = "SmolLM2-135M-Instruct"  # the ledger prices each model's tokens (USD per million)
    assert f"| {name} | {prompt} | {completion} | ${(prompt + 2 * completion) / 1e6:.4f} |" in report
    finished = salon(f"resume={run}", "simulation.budget.tokens=null")
    assert finished.returncode == 0, finished.stderr[-2000:]
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 8 and [e["id"] for e in episodes[:len(kept)]] == [e["id"] for e in kept]
    assert "stopped" not in (run / "report.md").read_text()
