"""`python -m bench.throughput`: tokens/s of the conversation engine running concurrent episodes
with the embedded model, against (a) the same episodes one at a time and (b) bare `generate`
calls on exactly the prompts the engine sent. Prints one JSON line (progress goes to stderr).

Tokens/s = completion tokens / wall seconds of the measured section:
- engine: the whole `ConversationEngine.run()` over all episodes (retrieval, prompt building,
  generation, cleaning, retries), not the critic;
- sequential: `run()` with one plan at a time (batch 1), on the first --sequential-episodes;
- raw: `lm.generate` alone, replaying each engine call (same prompts, same batch, same
  generation settings and sampling state, so the same tokens), timing only `generate`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from agents.turns import CallStats
from bench.common import (
    CpuSample,
    GenerateCall,
    ProfiledChatModel,
    TimedMemory,
    bench_config,
    completion_lengths,
    eos_ids,
    log,
    machine_summary,
    others_cpu_share,
)
from core.records import Episode
from core.rng import RngTree
from environment import build
from environment.engine import ConversationEngine, EpisodePlan
from environment.society import Society
from environment.store import SQLiteEpisodeStore

NEVER_REPEATS = 1.01  # Jaccard overlap never reaches it: every episode runs the full --turns
TARGET_SPEEDUP = 4.0
TARGET_FRACTION = 0.8
PROFILED_MODEL = "bench.common.ProfiledChatModel"  # LocalChatModel that logs each generate call
SECTIONS = ("engine", "raw", "sequential")
CONTENDED = 0.1  # others' CPU share above which a section's number is not trustworthy


@dataclass
class Setup:
    cfg: DictConfig
    model: ProfiledChatModel
    memory: TimedMemory
    plans: list[EpisodePlan]
    store: SQLiteEpisodeStore


@dataclass(frozen=True)
class Run:
    """One measured section: engine runs over groups of plans."""

    seconds: float
    episodes: list[Episode]
    stats: CallStats
    calls: list[GenerateCall]
    retrieval_seconds: float
    steps: int  # turn steps (a step = one batched model call, not counting retries)
    others_cpu: float  # share of the machine's CPU other processes used meanwhile

    @property
    def tok_s(self) -> float:
        return self.stats.completion_tokens / self.seconds


@dataclass(frozen=True)
class Raw:
    seconds: float
    completion_tokens: int
    others_cpu: float

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.seconds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=16, help="concurrent episodes (2 characters each)")
    parser.add_argument("--turns", type=int, default=4, help="turns per episode (fixed: no early stop)")
    parser.add_argument("--sequential-episodes", type=int, default=4,
                        help="episodes run one at a time for the sequential baseline (a subset: it is slow)")
    parser.add_argument("--seed", type=int, default=0, help="society seed (characters, pairs, sampling)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="times each section is measured; the JSON headline is the fastest repeat")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    args = parser.parse_args(argv)
    if min(args.episodes, args.turns, args.repeats) < 1 or not 1 <= args.sequential_episodes <= args.episodes:
        parser.error("need episodes, turns, repeats >= 1 and 1 <= sequential-episodes <= episodes")
    return args


def build_setup(args: argparse.Namespace, folder: Path) -> Setup:
    """A society wired as `task=simulate` wires it (environment/tasks/simulate.py: make_society),
    with 2 x episodes characters from the shipped bank, seeded memories in a chromadb store in
    ``folder``, and the configured model under the profiled class; the plans are the first
    round's pairs."""
    cfg = bench_config([f"seed={args.seed}", f"society.size={2 * args.episodes}",
                        f"paths.run_dir={folder}", f"model._target_={PROFILED_MODEL}"])
    rng = RngTree(cfg.seed)
    personas = build.choose_personas(cfg, rng)
    plan = build.adapter_plan(cfg)
    embedder = build.build_embedder(cfg)
    model = build.build_model(cfg, plan)
    memory = TimedMemory(build.build_memory(cfg, embedder, folder))
    characters = build.build_characters(personas, memory, model, plan)  # type: ignore[arg-type]
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    society = Society(characters, build.build_policy(cfg), make_engine(cfg, 1),
                      build.build_critic(cfg, embedder, model), store, rng,
                      build.society_settings(cfg).encounters)
    society.seed_memories(cfg.memory.seed_importance)
    return Setup(cfg, model, memory, society.plan_round(0), store)


def make_engine(cfg: DictConfig, turns: int) -> ConversationEngine:
    """The engine as configured (memory_k, retries, max_sentences), with exactly ``turns`` turns."""
    # one candidate per turn: the raw replay re-runs each `generate` call on the prompts the
    # engine kept, which a shared-prefix best-of-n call would not match row for row
    return build.build_engine(cfg, max_turns=turns, min_turns=turns, stop_on_goodbye=False,
                              repetition_threshold=NEVER_REPEATS, progress=False, keep_prompts=True,
                              candidates=1)


def timed_run(setup: Setup, groups: Sequence[Sequence[EpisodePlan]], turns: int, seed: int) -> Run:
    """One engine runs each group of plans in turn; only `run()` itself is timed."""
    engine = make_engine(setup.cfg, turns)
    rng = RngTree(seed)
    sink = setup.model.new_log()
    setup.memory.seconds = 0.0
    episodes: list[Episode] = []
    seconds, steps, first = 0.0, 0, CpuSample.now()
    for plans in groups:
        started = time.perf_counter()
        finished = engine.run(plans, rng, now=0.0)
        seconds += time.perf_counter() - started
        episodes.extend(finished)
        steps += max(len(e.turns) for e in finished)
    return Run(seconds, episodes, engine.stats, list(sink.calls), setup.memory.seconds, steps,
               others_cpu_share(first, CpuSample.now()))


def encoded_calls(model: ProfiledChatModel, run: Run) -> Iterator[tuple[GenerateCall, Any]]:
    """Each `generate` call of ``run`` with its inputs: the prompts the engine kept (in call
    order), encoded as the chat model encodes them."""
    prompts, offset = run.stats.prompts, 0
    for call in run.calls:
        yield call, model.encode([model.render(p) for p in prompts[offset : offset + call.batch]])
        offset += call.batch
    if offset != len(prompts):
        raise RuntimeError(f"replayed {offset} prompts but the engine kept {len(prompts)}")


def replay_raw(model: ProfiledChatModel, run: Run) -> Raw:
    """Each engine `generate` call again on the bare model, with the same inputs, settings and
    RNG state (so the same tokens); encoding is untimed, only generate is timed."""
    import torch

    lm, eos = model.bare_lm, eos_ids(model.bare_lm, model.tokenizer)
    seconds, tokens, first = 0.0, 0, CpuSample.now()
    for call, encoded in encoded_calls(model, run):
        torch.set_rng_state(call.rng_state)
        with torch.inference_mode():
            started = time.perf_counter()
            output = lm.generate(**encoded, **call.settings)
            seconds += time.perf_counter() - started
        tokens += sum(completion_lengths(output[:, encoded["input_ids"].shape[1] :], eos))
    return Raw(seconds, tokens, others_cpu_share(first, CpuSample.now()))


def prefill_seconds(model: ProfiledChatModel, run: Run) -> float:
    """The prompt pass alone (one forward over each call's padded batch, last logits only), to
    split `generate` time into prefill and token-by-token decoding."""
    import torch

    seconds = 0.0
    for _call, encoded in encoded_calls(model, run):
        with torch.inference_mode():
            started = time.perf_counter()
            model.bare_lm(**encoded, use_cache=True, logits_to_keep=1)
            seconds += time.perf_counter() - started
    return seconds


def warm_up(setup: Setup) -> None:
    """One turn at full batch and one at batch 1, so kernels, embedder and chromadb are warm."""
    timed_run(setup, [setup.plans], turns=1, seed=setup.cfg.seed + 1)
    timed_run(setup, [setup.plans[:1]], turns=1, seed=setup.cfg.seed + 1)


def profile(run: Run, prefill: float) -> dict[str, Any]:
    """Where the wall time of a run went, and how much of each batch was padding."""
    calls = run.calls
    generate = sum(c.seconds for c in calls)
    model_calls = run.stats.generate_seconds
    prompt_tokens = sum(c.prompt_tokens for c in calls)
    slots = sum(c.batch * c.decode_steps for c in calls)
    return {
        "seconds": round(run.seconds, 2),
        "retrieval_s": round(run.retrieval_seconds, 2),
        "generate_s": round(generate, 2),
        "prefill_s_estimate": round(prefill, 2),
        "decode_s_estimate": round(generate - prefill, 2),
        "template_tokenize_decode_s": round(model_calls - generate, 2),
        "prompts_cleaning_other_s": round(run.seconds - model_calls - run.retrieval_seconds, 2),
        "generate_calls": len(calls),
        "retry_calls": run.stats.model_calls - run.steps,
        "mean_prompt_tokens": round(prompt_tokens / max(1, sum(c.batch for c in calls)), 1),
        "prompt_padding_fraction": _waste(prompt_tokens, sum(c.padded_prompt_tokens for c in calls)),
        "decode_slot_waste_fraction": _waste(sum(c.completion_tokens for c in calls), slots),
    }


def _waste(used: int, allotted: int) -> float:
    return round(1 - used / allotted, 3) if allotted else 0.0


def episode_summary(run: Run) -> dict[str, Any]:
    turns = [t for e in run.episodes for t in e.turns]
    return {"episodes": len(run.episodes), "turns": len(turns),
            "failed_turns": sum(t.failed for t in turns),
            "completion_tokens": run.stats.completion_tokens, "prompt_tokens": run.stats.prompt_tokens,
            "model_calls": run.stats.model_calls, "tok_s": round(run.tok_s, 1)}


@dataclass(frozen=True)
class Measured:
    """Every repeat of each section, and the prompt-pass time of the fastest engine/sequential."""

    engine: list[Run]
    raw: list[Raw]
    sequential: list[Run]
    prefill: dict[str, float]

    def best(self, section: str) -> Any:
        return max(getattr(self, section), key=lambda r: r.tok_s)


def result(args: argparse.Namespace, setup: Setup, measured: Measured) -> dict[str, Any]:
    engine, raw, sequential = (measured.best(s) for s in SECTIONS)
    speedup, fraction = engine.tok_s / sequential.tok_s, engine.tok_s / raw.tok_s
    return {
        "benchmark": "throughput",
        "engine_tok_s": round(engine.tok_s, 1), "sequential_tok_s": round(sequential.tok_s, 1),
        "raw_tok_s": round(raw.tok_s, 1), "speedup_vs_sequential": round(speedup, 2),
        "fraction_of_raw": round(fraction, 3),
        "engine_generate_share": round(sum(c.seconds for c in engine.calls) / engine.seconds, 3),
        "targets_met": {f"speedup>={TARGET_SPEEDUP:g}": speedup >= TARGET_SPEEDUP,
                        f"fraction>={TARGET_FRACTION:g}": fraction >= TARGET_FRACTION},
        "headline": f"fastest of {args.repeats} repeats per section",
        "contended": max(engine.others_cpu, raw.others_cpu, sequential.others_cpu) > CONTENDED,
        "repeats_tok_s": {s: [round(r.tok_s, 1) for r in getattr(measured, s)] for s in SECTIONS},
        "repeats_others_cpu_share": {s: [round(r.others_cpu, 2) for r in getattr(measured, s)]
                                     for s in SECTIONS},
        "episodes": args.episodes, "turns_per_episode": args.turns,
        "sequential_episodes": args.sequential_episodes, "seed": args.seed,
        "batch_size": setup.model.max_batch_size, "max_new_tokens": setup.model.max_new_tokens,
        "temperature": setup.model.temperature, **machine_summary(setup.model),
        "engine": {**episode_summary(engine), "profile": profile(engine, measured.prefill["engine"])},
        "sequential": {**episode_summary(sequential),
                       "profile": profile(sequential, measured.prefill["sequential"])},
        "raw": {"completion_tokens": raw.completion_tokens, "generate_s": round(raw.seconds, 2),
                "same_tokens_as_engine": all(r.completion_tokens == e.stats.completion_tokens
                                             for r, e in zip(measured.raw, measured.engine, strict=True))},
    }


def measure_sections(args: argparse.Namespace, setup: Setup) -> Measured:
    """Engine (each repeat followed by its raw replay), then sequential, then prompt passes."""
    engine, raw, sequential = [], [], []
    for repeat in range(args.repeats):
        engine.append(timed_run(setup, [setup.plans], args.turns, args.seed))
        raw.append(replay_raw(setup.model, engine[-1]))
        log(f"repeat {repeat}: engine {engine[-1].tok_s:.1f} tok/s, raw {raw[-1].tok_s:.1f} tok/s "
            f"(others' CPU share {engine[-1].others_cpu:.2f}, {raw[-1].others_cpu:.2f})")
    groups = [[p] for p in setup.plans[: args.sequential_episodes]]
    for repeat in range(args.repeats):
        sequential.append(timed_run(setup, groups, args.turns, args.seed))
        log(f"repeat {repeat}: sequential {sequential[-1].tok_s:.1f} tok/s "
            f"(others' CPU share {sequential[-1].others_cpu:.2f})")
    measured = Measured(engine, raw, sequential, {})
    measured.prefill.update({s: prefill_seconds(setup.model, measured.best(s))
                             for s in ("engine", "sequential")})
    return measured


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    setup = build_setup(args, folder)
    log(f"{len(setup.plans)} episodes planned; warming up")
    warm_up(setup)
    measured = measure_sections(args, setup)
    setup.store.close()
    return {**result(args, setup, measured), "total_seconds": round(time.perf_counter() - started, 1),
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="salon-bench-") as folder:
        print(json.dumps(measure(args, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
