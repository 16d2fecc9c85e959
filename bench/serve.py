"""`python -m bench.serve`: concurrent chat requests to the OpenAI-compatible API on loopback
with the embedded model, with and without request batching on the server (`serve.batching`).

A real uvicorn server runs in this process (a thread); the requests go out concurrently over
HTTP from an asyncio client, each to a different character of the shipped bank, greedy and with
the same token cap. Prints one JSON line: requests/s, p50/p95 latency and the batch sizes the
server formed, per mode, plus the machine and the share of CPU other processes took.
`--mixed`: each client sends a valid request, a malformed one, then a valid one (the load test
of tests/test_serve_api.py), and the line adds the status codes and the malformed requests'
latency."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from bench.common import CpuSample, bench_config, log, machine_summary, others_cpu_share
from environment.build import instantiate
from environment.runtime import quiet_libraries
from environment.serve.app import BackgroundServer, create_app
from environment.serve.characters import CharacterDirectory, open_directory
from environment.serve.state import ServeSettings, ServeState

MESSAGE = "Hello! Tell me a little about yourself and what you do."
# what a broken client sends: each must come back 4xx, quickly, and leave the valid ones alone
MALFORMED: list[dict[str, Any]] = [
    {"content": b'{"model": "character/x", "messages": [', "headers": {"Content-Type": "application/json"}},
    {"json": {"model": "character/nobody", "messages": [{"role": "user", "content": MESSAGE}]}},
    {"json": {"model": "{model}", "messages": []}},
    {"json": {"model": "{model}", "messages": [{"role": "wizard", "content": MESSAGE}]}},
    {"json": {"model": "{model}", "messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 10**9}},
    {"json": {"model": "{model}", "messages": [{"role": "user", "content": "x" * 100_000}]}},
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="concurrent requests per mode")
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per reply")
    parser.add_argument("--max-batch", type=int, default=16, help="serve.max_batch when batching")
    parser.add_argument("--modes", default="batched,unbatched", help="batched, unbatched or both")
    parser.add_argument("--mixed", action="store_true", help="valid, malformed, valid from each client")
    return parser.parse_args(argv)


async def fire(url: str, models: Sequence[str], max_tokens: int) -> tuple[list[float], float, int]:
    """All requests at once; (latency per request, wall seconds, failures)."""
    async with httpx.AsyncClient(timeout=1800) as client:
        async def one(model: str) -> tuple[float, bool]:
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": MESSAGE}],
                "max_tokens": max_tokens, "temperature": 0})
            return time.perf_counter() - started, response.status_code == 200

        began = time.perf_counter()
        results = await asyncio.gather(*(one(m) for m in models))
        return [r[0] for r in results], time.perf_counter() - began, sum(not ok for _, ok in results)


def malformed(index: int, model: str) -> dict[str, Any]:
    request = MALFORMED[index % len(MALFORMED)]
    if "json" not in request:
        return request
    return {"json": {**request["json"], "model": request["json"]["model"].replace("{model}", model)}}


async def fire_mixed(url: str, models: Sequence[str], max_tokens: int) -> dict[str, Any]:
    """Every client at once: valid, malformed, valid; latencies of each kind and the statuses."""
    valid = {"messages": [{"role": "user", "content": MESSAGE}], "max_tokens": max_tokens, "temperature": 0}
    async with httpx.AsyncClient(timeout=1800) as client:
        async def timed(**request: Any) -> tuple[float, int]:
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/chat/completions", **request)
            return time.perf_counter() - started, response.status_code

        async def one(index: int, model: str) -> list[tuple[str, float, int]]:
            calls = [("valid", {"json": {**valid, "model": model}}), ("malformed", malformed(index, model)),
                     ("valid", {"json": {**valid, "model": model}})]
            return [(kind, *(await timed(**request))) for kind, request in calls]

        began = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(one(i, m) for i, m in enumerate(models))) for r in rs]
        wall = time.perf_counter() - began
    latency = {kind: [s for k, s, _ in results if k == kind] for kind in ("valid", "malformed")}
    statuses = Counter(str(code) for *_, code in results)
    quantiles = {f"{kind}_p{q}_s": round(percentile(v, q / 100), 2)
                 for kind, v in latency.items() for q in (50, 95)}
    return {"wall_s": round(wall, 2), "statuses": dict(sorted(statuses.items())), **quantiles}


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_mode(directory: CharacterDirectory, cfg: Any, batching: bool,
             args: argparse.Namespace) -> dict[str, Any]:
    settings = ServeSettings(batching=batching, max_batch=args.max_batch, remember=True)
    state = ServeState(directory, settings, instantiate(cfg.chat, "chat"), seed=0)
    models = [f"character/{p.id}" for p in directory.personas[: args.requests]]
    with BackgroundServer(create_app(state)) as server:
        asyncio.run(fire(server.url, models[:1], args.max_tokens))  # warm-up: first-call costs
        warm = len(state.batch_sizes)
        before = CpuSample.now()
        if args.mixed:
            mixed = asyncio.run(fire_mixed(server.url, models, args.max_tokens))
            return {**mixed, "batch_sizes": state.batch_sizes[warm:],
                    "others_cpu_share": round(others_cpu_share(before, CpuSample.now()), 2)}
        latencies, wall, failed = asyncio.run(fire(server.url, models, args.max_tokens))
        others = others_cpu_share(before, CpuSample.now())
    return {"requests_per_s": round(len(models) / wall, 3), "wall_s": round(wall, 2),
            "p50_s": round(statistics.median(latencies), 2), "p95_s": round(percentile(latencies, 0.95), 2),
            "failed": failed, "batch_sizes": state.batch_sizes[warm:],
            "others_cpu_share": round(others, 2)}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_libraries()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="salon-bench-serve-") as folder:
        cfg = bench_config([f"paths.chat_memory={folder}", f"paths.run_dir={folder}"])
        directory = open_directory(cfg)
        log(f"{len(directory.personas)} characters; seeding memories and loading the model")
        directory.seed_all()
        result: dict[str, Any] = {"bench": "serve", "requests": args.requests,
                                  "max_tokens": args.max_tokens, "max_batch": args.max_batch,
                                  "load_average_1m": round(os.getloadavg()[0], 2)}
        for mode in modes:
            log(f"{mode}: {args.requests} concurrent requests")
            result[mode] = run_mode(directory, cfg, mode == "batched", args)
            log(f"{mode}: {result[mode]}")
        result["mixed"] = args.mixed
        if {"batched", "unbatched"} <= set(result) and not args.mixed:
            batched, unbatched = result["batched"], result["unbatched"]
            result["speedup"] = round(batched["requests_per_s"] / unbatched["requests_per_s"], 2)
        result["machine"] = machine_summary(directory.model)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
