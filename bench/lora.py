"""LoRA training throughput on this machine for the embedded model.

`python -m bench.lora [--examples 32] [--steps 8]` fine-tunes SmolLM2-135M with LoRA (TRL SFT,
the project's own `training.lora.train_lora`) on chat examples built from Persona-Chat dev
dialogues in Salon's reply-prompt format (realistic prompt lengths), once with bf16 autocast
and once in float32 (the same-run baseline), and prints one JSON line: training tokens/s for
each and their ratio. Tokens are the tokenised example lengths times the examples seen."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.common import CpuSample, log, others_cpu_share

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
PERSONACHAT = Path(__file__).resolve().parents[2] / "shared/data/personachat/valid_both_original_no_cands.txt"


def chat_examples(count: int):
    from datasets import Dataset

    from agents.importers import read_personachat
    from agents.models.messages import to_chat
    from agents.prompting import PromptBuilder
    from training.evaluate import personachat_examples

    examples = personachat_examples(read_personachat(PERSONACHAT, "dev")[:count], PromptBuilder(), 1)
    return Dataset.from_list([{"messages": [*to_chat(e.messages),
                                            {"role": "assistant", "content": e.reference}]}
                              for e in examples[:count]])


def measure(base, data, steps: int, bf16: str) -> dict:
    from training.lora import LoraTrainingConfig, train_lora

    with tempfile.TemporaryDirectory() as folder:
        config = LoraTrainingConfig(max_steps=steps, batch_size=4, save_steps=10_000, bf16=bf16)
        start = CpuSample.now()
        result = train_lora(config, base, data, None, Path(folder))
        contention = others_cpu_share(start, CpuSample.now())
    return {"seconds": round(result.seconds, 1), "train_tokens": result.train_tokens,
            "tok_s": round(result.tokens_per_second, 1), "s_per_step": round(result.seconds / steps, 2),
            "others_cpu_share": round(contention, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    from agents.models import loading
    from environment.runtime import quiet_libraries

    quiet_libraries()
    base = loading.cached_folder(loading.embedded_source(),
                                 Path(os.environ.get("SALON_CACHE", Path.home() / ".cache/salon")))
    data = chat_examples(args.examples)
    log(f"{len(data)} examples; bf16 autocast run")
    bf16 = measure(base, data, args.steps, "true")
    log("float32 run (baseline)")
    fp32 = measure(base, data, args.steps, "false")
    print(json.dumps({"benchmark": "lora", "examples": len(data), "steps": args.steps, "batch_size": 4,
                      "bf16": bf16, "fp32": fp32, "bf16_speedup": round(bf16["tok_s"] / fp32["tok_s"], 2),
                      "cpus": os.cpu_count(), "torch_threads": _threads()}))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
