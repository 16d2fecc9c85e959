"""Teacher-forced scoring with a causal LM: log-likelihood of given replies (perplexity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def reply_token_losses(lm: Any, tokenizer: Any, prompts: Sequence[str], replies: Sequence[str],
                       max_length: int, forward_kwargs: dict[str, Any]) -> list[tuple[float, int]]:
    """(sum of negative log-likelihood, token count) of each reply after its prompt, in one
    right-padded forward pass; the reply ends with the end-of-turn token."""
    import torch

    rows, spans = [], []
    for prompt, reply in zip(prompts, replies, strict=True):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tail = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        head = head[-max(max_length - len(tail), 1):]
        rows.append(head + tail)
        spans.append((len(head), len(head) + len(tail)))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    with torch.inference_mode():
        logits = lm(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                    **forward_kwargs).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = ids[:, 1:].to(lm.device)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return [(-float(picked[i, start - 1 : end - 1].sum()), end - start)
            for i, (start, end) in enumerate(spans)]
