"""`python -m bench.reproducible`: does the same seed give the same run, and what does it cost?
Runs the same small society through run.py twice in each mode, alternating: `lockstep` (what
`schedule=auto` picks in process: one batch of every episode a step), `independent` (episodes
on their own, the micro-batcher merging whatever is pending) and `batch_1` (independent,
`model.max_batch_size=1`: each prompt alone). Prints one JSON line: per mode, how many turns
(and sampled candidates) differ between its two runs, and the rounds' wall time, with each
mode's time as a ratio to independent's."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import CpuSample, log, others_cpu_share

ROOT = Path(__file__).resolve().parents[1]
MODES = {"lockstep": ["conversation.schedule=lockstep"], "independent": ["conversation.schedule=independent"],
         "batch_1": ["conversation.schedule=independent", "model.max_batch_size=1"]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8, help="characters")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--turns", type=int, default=4, help="conversation.max_turns")
    return parser.parse_args(argv)


def one_run(folder: Path, args: argparse.Namespace, extra: list[str]) -> tuple[list[dict], float]:
    command = [sys.executable, "run.py", f"society.size={args.size}", f"simulation.rounds={args.rounds}",
               f"conversation.max_turns={args.turns}", "simulation.progress=false", f"hydra.run.dir={folder}",
               *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=env)
    episodes = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    report = (folder / "report.md").read_text()
    wall = float(report.split("| wall time | ")[1].split(" s")[0])
    return episodes, wall


def differences(first: list[dict], second: list[dict]) -> dict[str, int]:
    pairs = [(a, b) for x, y in zip(first, second, strict=True)
             for a, b in zip(x["turns"], y["turns"], strict=False)]
    candidates = [(c, d) for a, b in pairs for c, d in zip(a["candidates"], b["candidates"], strict=False)]
    return {"turns": len(pairs), "turns_differ": sum(a["text"] != b["text"] for a, b in pairs),
            "candidates_differ": sum(c["text"] != d["text"] for c, d in candidates),
            "episodes_differ": sum(x != y for x, y in zip(first, second, strict=True))}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    runs: dict[str, list[tuple[list[dict], float]]] = {mode: [] for mode in MODES}
    before = CpuSample.now()
    with tempfile.TemporaryDirectory(prefix="salon-bench-repro-") as folder:
        for attempt in range(2):
            for mode, extra in MODES.items():
                log(f"{mode}, run {attempt + 1}")
                runs[mode].append(one_run(Path(folder) / f"{mode}-{attempt}", args, extra))
    result: dict[str, Any] = {"bench": "reproducible", "size": args.size, "rounds": args.rounds,
                              "max_turns": args.turns}
    for mode, (first, second) in runs.items():
        result[mode] = {**differences(first[0], second[0]), "wall_s": [first[1], second[1]]}
    walls = {mode: sum(r[1] for r in done) for mode, done in runs.items()}
    result["time_vs_independent"] = {mode: round(w / walls["independent"], 2) for mode, w in walls.items()}
    result["others_cpu_share"] = round(others_cpu_share(before, CpuSample.now()), 2)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
