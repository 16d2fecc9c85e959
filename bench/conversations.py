"""`python -m bench.conversations [--label L] [--folder RUN] [-- overrides...]`: how good the
conversations of a default run are, measured without a model. Runs `python run.py` with the
overrides (or reads an existing run folder) and prints one JSON line: the share of episodes
with a line that nearly repeats an earlier one, the share of lines that open with their own
speaker's name, mean turns, stop reasons, distinct-1/2, the critic's means and the wall time.

Definitions (agents/degeneration.py): a line nearly repeats an earlier line of the episode when
their word sets overlap by Jaccard >= 0.6 or they share a run of 6 consecutive words."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.degeneration import run_degeneration
from bench.common import CpuSample, log, others_cpu_share

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.conversations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="default", help="a name for this configuration in the output")
    parser.add_argument("--folder", type=Path, help="measure this run folder instead of running one")
    parser.add_argument("--keep", type=Path, help="run into this folder (kept) instead of a temporary one")
    parser.add_argument("overrides", nargs="*", help="passed to run.py (after --)")
    return parser.parse_args(argv)


def run_once(overrides: Sequence[str], folder: Path) -> tuple[float, float]:
    """`python run.py <overrides>` into ``folder``: (wall seconds, others' CPU share)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    before, started = CpuSample.now(), time.perf_counter()
    result = subprocess.run([sys.executable, "run.py", *overrides, f"hydra.run.dir={folder}",
                             "simulation.progress=false"], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"run.py failed ({result.returncode}): {result.stderr[-2000:]}")
    return wall, others_cpu_share(before, CpuSample.now())


def measure(folder: Path) -> dict[str, Any]:
    episodes = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    rows = []
    for e in episodes:
        spoken = [t for t in e["turns"] if not t["failed"]]
        rows.append(([t["speaker"] for t in spoken], [t["text"] for t in spoken], len(e["turns"]),
                     e["stop_reason"]))
    measured = dataclasses.asdict(run_degeneration(rows))
    dimensions = sorted({k for e in episodes for k in (e["scores"] or {})})
    means = {d: _mean([e["scores"].get(d) for e in episodes if e["scores"]]) for d in dimensions}
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()},
            "critic_means": means}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 3) if kept else None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result: dict[str, Any] = {"bench": "conversations", "label": args.label, "overrides": args.overrides}
    if args.folder:
        result |= measure(args.folder)
    else:
        with tempfile.TemporaryDirectory(prefix="salon-bench-conversations-") as temp:
            folder = args.keep or Path(temp) / "run"
            log(f"{args.label}: python run.py {' '.join(args.overrides)} -> {folder}")
            wall, others = run_once(args.overrides, folder)
            result |= measure(folder) | {"wall_s": round(wall, 1), "others_cpu_share": round(others, 2)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
