"""No copying from the conversation: a logits processor that forbids a reply to continue any
n-gram of the texts it must not copy (the episode's earlier lines, both speakers', and the
memories recalled for the turn), except the n-grams of the speaker's own persona facts, which
it may always use.

transformers' ``no_repeat_ngram_size`` blocks n-grams of the whole sequence, prompt included,
so it would block the persona facts too, and it cannot tell a quoted memory from an
instruction; this processor takes the texts per row instead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Ngrams = dict[tuple[int, ...], set[int]]  # an (n-1)-token prefix -> the tokens it must not continue with


@dataclass(frozen=True)
class Avoid:
    """What one reply must not copy (``texts``) and what it may always say (``allowed``)."""

    texts: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


def token_variants(tokenizer: Any, text: str) -> list[list[int]]:
    """The text's tokens as it would appear inside a reply: at the start and after a space
    (BPE tokenises "I" and " I" differently)."""
    return [tokenizer.encode(variant, add_special_tokens=False) for variant in (text, " " + text)]


def ngrams_of(sequences: Sequence[Sequence[int]], n: int) -> set[tuple[int, ...]]:
    return {tuple(seq[i:i + n]) for seq in sequences for i in range(len(seq) - n + 1)}


def banned_ngrams(tokenizer: Any, avoid: Avoid, n: int) -> Ngrams:
    """The n-grams of ``avoid.texts`` that are not n-grams of ``avoid.allowed``, by prefix."""
    blocked = ngrams_of([v for t in avoid.texts for v in token_variants(tokenizer, t)], n)
    blocked -= ngrams_of([v for t in avoid.allowed for v in token_variants(tokenizer, t)], n)
    table: Ngrams = {}
    for gram in blocked:
        table.setdefault(gram[:-1], set()).add(gram[-1])
    return table


class NgramBlocker:
    """A `LogitsProcessor` (the `__call__(input_ids, scores)` contract): for row r, the reply
    generated so far (the tokens after ``prompt_length``) may not complete an n-gram of
    ``tables[r]``. Rows are the batch rows of `generate` (each conversation's candidates are
    consecutive rows, so ``tables`` is repeated per candidate)."""

    def __init__(self, tables: Sequence[Ngrams], n: int, prompt_length: int) -> None:
        if n < 2:
            raise ValueError("n-gram blocking needs n >= 2")
        self.tables, self.n, self.prompt_length = list(tables), n, prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] < self.n - 1:
            return scores
        prefixes = generated[:, -(self.n - 1):].tolist()
        for row, prefix in enumerate(prefixes):
            banned = self.tables[row].get(tuple(prefix))
            if banned:
                scores[row, list(banned)] = float("-inf")
        return scores
