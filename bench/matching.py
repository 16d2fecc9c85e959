"""`python -m bench.matching`: interpersonal matching and pairing at 1,024 characters.

Builds a template bank of 16 x 64 = 1,024 characters and measures, printing one JSON line
(progress goes to stderr):

- embedding: loading MiniLM and embedding the 1,024 persona descriptions once (cold), plus the
  same on a subset with a shorter ``max_seq_length`` and with bfloat16 autocast, extrapolated
  to 1,024 (what would bring embedding down);
- dispatch: every character as a seeker against all 1,024 as supporters, from the embeddings:
  one 1,024 x 1,024 compatibility matrix and an argmax per row. Same-run baselines: the
  scorer's per-pair call in a Python loop on a few seekers, and a cross-encoder (MiniLM with a
  regression head) on a few pairs, both extrapolated to the 1,048,576 pairs. Then the whole
  dispatch again as `task=match` runs once the bank's embeddings are kept on disk (a new
  embedder reads them; the model is not loaded);
- pairing: one round of disjoint pairs for 1,024 characters under every policy, on a graph with
  one earlier scored round; ratio against random pairing; and the matching solver against
  networkx's exact blossom algorithm on 128 characters (total weight and time).

Targets (2 CPU cores): dispatch <= 10 s, pairing <= 5 s per policy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from agents.bank import generate_template_bank
from bench.common import CpuSample, log, others_cpu_share
from core.records import Episode, Scores, Turn
from environment.graph import build_graph, update_graph
from matching.assignment import max_weight_pairs
from matching.bandit import BanditPairing
from matching.compatibility import CompatibilityPairing
from matching.dispatch import best_supporters
from matching.policies import PersonaMember, RandomPairing, RoundRobinPairing
from matching.preference import GraphPairing, HeterophilyPairing, HomophilyPairing
from matching.scorers import EmbeddingCompatibility, persona_texts
from memory.embedder import SentenceEmbedder

DISPATCH_TARGET = 10.0
PAIRING_TARGET = 5.0


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def embedding_section(texts: list[str], subset: int, kept: Path) -> tuple[SentenceEmbedder, dict[str, Any]]:
    embedder = SentenceEmbedder()
    _, load = timed(lambda: embedder.model)
    _, cold = timed(lambda: embedder.embed_kept(texts, kept))  # embeds, then saves to disk
    tokens = [len(ids) for ids in embedder.model.tokenizer(texts[:subset])["input_ids"]]
    options = embedding_options(embedder, texts[-subset:], len(texts))
    log(f"embedding: load {load:.1f} s, {len(texts)} texts {cold:.1f} s")
    return embedder, {"load_s": round(load, 2), "embed_s": round(cold, 2), "texts": len(texts),
                      "mean_tokens": round(float(np.mean(tokens)), 1),
                      "max_seq_length": embedder.model.max_seq_length,
                      "options_on_subset_extrapolated": options}


def embedding_options(embedder: SentenceEmbedder, texts: list[str], total: int) -> dict[str, Any]:
    """The same encode on a subset, as shipped and with cheaper settings: seconds scaled to
    ``total`` texts, and the mean cosine of each option's embeddings to the shipped ones."""
    import torch

    model, scale = embedder.model, total / len(texts)

    def encode(max_length: int, bf16: bool) -> tuple[np.ndarray, float]:
        original = model.max_seq_length
        model.max_seq_length = max_length
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return timed(lambda: model.encode(texts, batch_size=64, normalize_embeddings=True,
                                                  show_progress_bar=False, convert_to_numpy=True))
        finally:
            model.max_seq_length = original

    shipped = model.max_seq_length
    reference, seconds = encode(shipped, False)
    results: dict[str, Any] = {"default": {"s": round(seconds * scale, 2), "cosine_to_default": 1.0}}
    for name, length, bf16 in (("max_seq_length_128", 128, False), ("bf16_autocast", shipped, True),
                               ("bf16_and_128", 128, True)):
        vectors, seconds = encode(length, bf16)
        agreement = float(np.mean(np.sum(vectors.astype(np.float32) * reference, axis=1)))
        results[name] = {"s": round(seconds * scale, 2), "cosine_to_default": round(agreement, 4)}
    return results


def dispatch_section(embedder: SentenceEmbedder, texts: list[str], loop_seekers: int,
                     cross_pairs: int) -> dict[str, Any]:
    scorer = EmbeddingCompatibility(embedder)
    matrix, matrix_s = timed(lambda: scorer.score_matrix(texts, texts))
    _, argmax_s = timed(lambda: best_supporters(matrix))
    per_pair_s, agree = naive_loop(scorer, texts, matrix, loop_seekers)
    pairs = len(texts) ** 2
    cross_s = cross_encoder_seconds(texts, cross_pairs) if cross_pairs else float("nan")
    dispatch_s = matrix_s + argmax_s
    log(f"dispatch: matrix {matrix_s:.2f} s + argmax {argmax_s:.3f} s")
    return {"seekers": len(texts), "supporters": len(texts), "matrix_s": round(matrix_s, 3),
            "argmax_s": round(argmax_s, 4), "dispatch_s": round(dispatch_s, 3),
            "target_s": DISPATCH_TARGET, "meets_target": dispatch_s <= DISPATCH_TARGET,
            "naive_loop_per_pair_ms": round(per_pair_s * 1e3, 4),
            "naive_loop_extrapolated_s": round(per_pair_s * pairs, 1),
            "speedup_vs_naive_loop": round(per_pair_s * pairs / dispatch_s, 1),
            "naive_loop_same_best": agree,
            "cross_encoder_pairs_per_s": round(1 / cross_s, 1) if cross_s == cross_s else None,
            "cross_encoder_extrapolated_h": round(cross_s * pairs / 3600, 1) if cross_s == cross_s else None}


def naive_loop(scorer: EmbeddingCompatibility, texts: list[str], matrix: np.ndarray, seekers: int
               ) -> tuple[float, bool]:
    """Per-pair scorer calls in a Python loop for the first ``seekers`` rows (embeddings cached);
    also whether each row's best score equals the matrix dispatch's."""
    started = time.perf_counter()
    best = []
    for i in range(seekers):
        best.append(max(float(scorer.score_pairs([texts[i]], [texts[j]])[0])
                        for j in range(len(texts)) if j != i))
    seconds = (time.perf_counter() - started) / (seekers * (len(texts) - 1))
    chosen = best_supporters(matrix[:seekers])
    agree = all(np.isclose(b, matrix[i, chosen[i]], atol=1e-5) for i, b in enumerate(best))
    return seconds, bool(agree)


def cross_encoder_seconds(texts: list[str], pairs: int) -> float:
    """Seconds per pair of a MiniLM cross-encoder (a fresh regression head: the cost, not the
    quality, of the trained compatibility scorer) in batches of 32."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from memory.embedder import bundled_minilm_path

    path = bundled_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    a, b = texts[:pairs], texts[-pairs:]
    with torch.inference_mode():  # warm-up: the first call pays one-off allocation costs
        model(**tokenizer(a[:2], b[:2], truncation=True, max_length=512, padding=True, return_tensors="pt"))
    started = time.perf_counter()
    for start in range(0, pairs, 32):
        batch = tokenizer(a[start:start + 32], b[start:start + 32], truncation=True, max_length=512,
                          padding=True, return_tensors="pt")
        with torch.inference_mode():
            model(**batch)
    return (time.perf_counter() - started) / pairs


def history(characters: Sequence[PersonaMember], rng: np.random.Generator) -> nx.Graph:
    """A graph with one earlier round of random pairs, scored 1-5 at random."""
    graph = build_graph([c.persona for c in characters], [])
    for i, (a, b) in enumerate(RandomPairing()(characters, graph, rng, 0)):
        scores = Scores({}, {}, float(rng.uniform(1, 5)))
        roles = {a.name: "peer", b.name: "peer"}
        turns = (Turn(a.name, "Hello."),)
        update_graph(graph, Episode(f"r000-e{i:04d}", 0, (a.name, b.name), {}, roles, turns, "bench",
                                    scores=scores))
    return graph


def pairing_section(embedder: SentenceEmbedder, characters: list[PersonaMember], seed: int) -> dict[str, Any]:
    policies: dict[str, Any] = {
        "random": RandomPairing(), "round_robin": RoundRobinPairing(),
        "homophily": HomophilyPairing(embedder), "heterophily": HeterophilyPairing(embedder),
        "graph": GraphPairing(), "compatibility": CompatibilityPairing(embedder=embedder),
        "bandit_ucb": BanditPairing("ucb", embedder=embedder),
        "bandit_thompson": BanditPairing("thompson", embedder=embedder)}
    graph = history(characters, np.random.default_rng(seed))
    seconds = {}
    for name, policy in policies.items():
        pairs, seconds[name] = timed(lambda p=policy: p(characters, graph, np.random.default_rng(seed), 1))
        assert len({c.name for pair in pairs for c in pair}) == len(characters), name
        log(f"pairing {name}: {seconds[name]:.2f} s")
    slowest = max(seconds.values())
    return {"characters": len(characters), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "ratio_vs_random": {k: round(v / seconds["random"], 1) for k, v in seconds.items()},
            "target_s": PAIRING_TARGET, "meets_target": slowest <= PAIRING_TARGET}


def solver_section(embedder: SentenceEmbedder, texts: list[str], size: int) -> dict[str, Any]:
    """Our solver (assignment + 2-opt) against the exact blossom on real persona similarities."""
    vectors = embedder(texts[:size])
    weights = vectors @ vectors.T
    exact, exact_s = timed(lambda: max_weight_pairs(weights, exact_limit=size))
    ours, ours_s = timed(lambda: max_weight_pairs(weights, exact_limit=0))

    def total(pairs: list[tuple[int, int]]) -> float:
        return float(sum(weights[a, b] for a, b in pairs))

    return {"characters": size, "exact_s": round(exact_s, 3), "ours_s": round(ours_s, 4),
            "speedup": round(exact_s / ours_s, 1), "weight_ratio": round(total(ours) / total(exact), 5)}


def kept_dispatch(texts: list[str], kept: Path) -> float:
    """What `task=match` pays once the bank's embeddings are on disk: a new embedder (empty
    cache, model not loaded) reads them, then the matrix and the argmax."""
    def run() -> np.ndarray:
        embedder = SentenceEmbedder()
        embedder.embed_kept(texts, kept)
        return best_supporters(EmbeddingCompatibility(embedder).score_matrix(texts, texts))

    _, seconds = timed(run)
    shutil.rmtree(kept, ignore_errors=True)
    log(f"dispatch from embeddings kept on disk: {seconds:.3f} s")
    return round(seconds, 3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-type", type=int, default=64, help="characters per MBTI type (16 types)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option-subset", type=int, default=128, help="texts for the embedding options")
    parser.add_argument("--loop-seekers", type=int, default=4, help="seekers in the naive per-pair loop")
    parser.add_argument("--cross-pairs", type=int, default=64, help="cross-encoder pairs (0: skip)")
    parser.add_argument("--solver-size", type=int, default=128, help="characters for the exact-solver check")
    args = parser.parse_args(argv)
    begin = CpuSample.now()
    bank = generate_template_bank(args.per_type, np.random.default_rng(args.seed))
    texts = persona_texts(bank)
    kept = Path(tempfile.mkdtemp(prefix="salon-bench-embeddings-"))
    embedder, embedding = embedding_section(texts, args.option_subset, kept)
    result = {"bench": "matching", "embedding": embedding,
              "dispatch": dispatch_section(embedder, texts, args.loop_seekers, args.cross_pairs),
              "pairing": pairing_section(embedder, [PersonaMember(p) for p in bank], args.seed),
              "solver": solver_section(embedder, texts, args.solver_size)}
    cold = embedding["embed_s"] + result["dispatch"]["dispatch_s"]
    result["dispatch_with_cold_embedding_s"] = round(cold, 2)
    result["dispatch_with_kept_embeddings_s"] = kept_dispatch(texts, kept)
    result["others_cpu_share"] = round(others_cpu_share(begin, CpuSample.now()), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
