"""`python -m bench.engine`: one Society round (critic off) through four engines, in one run:

(a) lockstep: the in-process model, every episode's turn in one batched call per step;
(b) independent: the in-process model, each episode on its own behind the micro-batcher;
(c) llamacpp: the independent engine over `model=llamacpp` (llama-server on 127.0.0.1);
(d) raw: a fresh llama-server of the same settings driven by a minimal asyncio client that
    replays (c)'s requests, each episode's in order, episodes concurrently: the ceiling.

Every engine starts from the same seeded memories and the same pairs; episodes run a fixed
number of turns (no early stop) so each does the same work. One JSON line: wall times,
completion and prompt tokens/s, the server's prompt-cache hit rate, and
server_vs_lockstep = (a)/(c) and server_vs_raw = (d)/(c) wall time. Progress goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.models.messages import to_chat
from agents.models.served import LlamaCppChat
from bench.common import bench_config, cpu_flags, log, machine_summary
from core.rng import RngTree
from environment import build
from environment.engine import EpisodePlan
from environment.society import Society
from environment.store import SQLiteEpisodeStore

NEVER_REPEATS = 1.01  # Jaccard overlap never reaches it: every episode runs all its turns


@dataclass
class Case:
    name: str
    seconds: float
    completion_tokens: int
    prompt_tokens: int
    episodes: int
    failed_turns: int
    cache_hit_rate: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1),
                "completion_tok_s": round(self.completion_tokens / self.seconds, 1),
                "prompt_tok_s": round(self.prompt_tokens / self.seconds, 1),
                "completion_tokens": self.completion_tokens, "prompt_tokens": self.prompt_tokens,
                "episodes": self.episodes, "failed_turns": self.failed_turns,
                **({} if self.cache_hit_rate is None else {"cache_hit_rate": round(self.cache_hit_rate, 3)})}


@dataclass
class Recorder:
    """(c)'s requests per episode thread, in order, for the raw replay."""

    requests: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, model: LlamaCppChat, candidates: int) -> None:
        """Record each request's body as the model builds it (`_payload`), with its n choices."""
        original = model._payload

        def recorded(messages: Any, *args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            route, extra = original(messages, *args)
            with self.lock:
                self.requests.setdefault(threading.get_ident(), []).append(
                    {"messages": to_chat(messages), "n": candidates, **extra})
            return route, extra

        model._payload = recorded  # type: ignore[method-assign]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=16, help="episodes in the round (2 characters each)")
    parser.add_argument("--turns", type=int, default=6, help="turns per episode (fixed: no early stop)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slots", type=int, default=64, help="llama-server parallel slots")
    parser.add_argument("--skip-local", action="store_true", help="only (c) and (d)")
    parser.add_argument("--server-args", default="", help="more llama-server flags, e.g. '-fa on'")
    parser.add_argument("--quantize", default="auto", help="model.quantize for llama-server: auto (BF16 with "
                        "avx512_bf16, else F32), null (the shipped Q4_1), Q8_0, ...")
    return parser.parse_args(argv)


def society(args: argparse.Namespace, folder: Path, overrides: Sequence[str]) -> tuple[Society, Any]:
    """A society as `task=simulate` wires it, with seeded memories in ``folder``; its model."""
    cfg = bench_config([f"seed={args.seed}", f"society.size={2 * args.episodes}", f"paths.run_dir={folder}",
                        *overrides])
    rng = RngTree(cfg.seed)
    embedder = build.build_embedder(cfg)
    model = build.build_model(cfg)
    memory = build.build_memory(cfg, embedder, folder)
    personas = build.choose_personas(cfg, rng)
    characters = build.build_characters(personas, memory, model, build.adapter_plan(cfg))
    engine = build.build_engine(cfg, embedder, max_turns=args.turns, min_turns=args.turns,
                                stop_on_goodbye=False, repetition_threshold=NEVER_REPEATS, progress=False)
    critic = build.build_critic(cfg, embedder, None)  # built, never called: the round is not scored
    built = Society(characters, build.build_policy(cfg, embedder), engine, critic,
                    SQLiteEpisodeStore(folder / "episodes.sqlite"), rng,
                    build.society_settings(cfg).encounters)
    built.seed_memories(cfg.memory.seed_importance)
    return built, model


def run_case(name: str, args: argparse.Namespace, overrides: Sequence[str],
             recorder: Recorder | None = None) -> tuple[Case, Any]:
    with tempfile.TemporaryDirectory(prefix=f"salon-bench-{name}-") as folder:
        built, model = society(args, Path(folder), overrides)
        plans: list[EpisodePlan] = built.plan_round(0)
        if isinstance(model, LlamaCppChat):
            model.start()
            if recorder is not None:
                recorder.wrap(model, built.engine.turn.candidates)
        else:
            built.engine.run(plans[:1], RngTree(args.seed + 1), now=0.0)  # warm: kernels, embedder
        log(f"{name}: {len(plans)} episodes x {args.turns} turns")
        started = time.perf_counter()
        episodes = built.engine.run(plans, built.rng, now=0.0)
        seconds = time.perf_counter() - started
        stats = built.engine.stats
        hit = model.usage.cache_hit_rate if isinstance(model, LlamaCppChat) else None
        case = Case(name, seconds, stats.completion_tokens, stats.prompt_tokens, len(episodes),
                    sum(t.failed for e in episodes for t in e.turns), hit)
        log(f"{name}: {case.summary()}")
        return case, model


async def _replay(base_url: str, episodes: list[list[dict[str, Any]]]) -> tuple[int, int, int, list[str]]:
    import httpx

    totals, others = [0, 0, 0], []  # completion (first choice), prompt, cached tokens; other choices

    async def one(client: httpx.AsyncClient, requests: list[dict[str, Any]]) -> None:
        for request in requests:
            answer = (await client.post(f"{base_url}/v1/chat/completions", json=request)).json()
            usage = answer["usage"]
            totals[0] += int(usage["completion_tokens"])
            totals[1] += int(usage["prompt_tokens"])
            totals[2] += int(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
            others.extend(c["message"]["content"] for c in answer["choices"][1:])

    limits = httpx.Limits(max_connections=len(episodes) + 1)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(one(client, r) for r in episodes))
    return totals[0], totals[1], totals[2], others


def replay(model: LlamaCppChat, recorder: Recorder, served: Case) -> Case:
    """(c)'s requests on a fresh server (an empty prompt cache, like (c)'s at its start)."""
    model.close()
    model.start()
    episodes = list(recorder.requests.values())
    started = time.perf_counter()
    first, prompt, cached, others = asyncio.run(_replay(model.base_url, episodes))
    seconds = time.perf_counter() - started
    # the server reports the first choice's tokens only; the others are counted as (c) counts them
    completion = first + sum(model.count_tokens(text) for text in others)
    case = Case("raw", seconds, completion, prompt, len(episodes), 0, cached / max(1, prompt))
    log(f"raw: {case.summary()}")
    return case


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cases: dict[str, Case] = {}
    machine: dict[str, Any] = {}
    if not args.skip_local:
        cases["lockstep"], local = run_case("lockstep", args, ["conversation.schedule=lockstep"])
        machine = machine_summary(local)
        cases["independent"], _ = run_case("independent", args, ["conversation.schedule=independent"])
    recorder = Recorder()
    flags = ",".join(f"'{a}'" for a in args.server_args.split())
    cases["llamacpp"], served = run_case("llamacpp", args, ["model=llamacpp", f"model.slots={args.slots}",
                                                            f"model.quantize={args.quantize}",
                                                            f"model.extra_args=[{flags}]"], recorder)
    cases["raw"] = replay(served, recorder, cases["llamacpp"])
    served.close()
    result: dict[str, Any] = {"benchmark": "engine", "episodes": args.episodes, "turns": args.turns,
                              "slots": args.slots, "server_args": args.server_args, "quantize": args.quantize,
                              **{k: v.summary() for k, v in cases.items()}}
    if "lockstep" in cases:
        result["server_vs_lockstep"] = round(cases["lockstep"].seconds / cases["llamacpp"].seconds, 2)
        result["independent_vs_lockstep"] = round(cases["lockstep"].seconds / cases["independent"].seconds, 2)
    result["server_vs_raw"] = round(cases["raw"].seconds / cases["llamacpp"].seconds, 2)
    result["machine"] = machine | {"cpu_flags": cpu_flags()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
