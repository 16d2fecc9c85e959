"""The embedded local chat model (SmolLM2-135M): a real batched `batch()`, correct left padding,
token usage, and next-token choice probabilities."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agents.models.local import LocalChatModel

NEW_TOKENS = 16
DIGITS = ("1", "2", "3", "4", "5")
# Very different lengths, so the short prompts are left-padded by many tokens in a batch.
PROMPTS = [
    [SystemMessage("You are Anna, a baker in Lyon who loves sourdough and wakes up at four."),
     HumanMessage("Hi Anna! How was your day at the bakery? Tell me about the ovens, the flour and "
                  "the customers who came in this morning.")],
    [HumanMessage("Say hello.")],
    [SystemMessage("You are Bob, a bicycle mechanic."), HumanMessage("What is your favourite food?")],
]
JUDGE = [SystemMessage("You are a strict judge."),
         HumanMessage("Anna: I feel much better now, thanks!\nBob: Glad to help.\n\n"
                      "On a scale from 1 to 5, did Anna's mood improve? Answer with one digit.")]


@pytest.fixture(scope="module")
def float32_model(cache_dir) -> LocalChatModel:
    """The same weights in float32, where padded and unpadded rows compute the same numbers."""
    return LocalChatModel(cache_dir=str(cache_dir), temperature=0.0, dtype="float32",
                          max_new_tokens=10)  # float32 is 2x slower: fewer tokens suffice


@pytest.fixture(scope="module")
def batched(chat_model: LocalChatModel) -> list[AIMessage]:
    """One batched call of the session model, shared by the tests that read it."""
    return chat_model.batch(PROMPTS, max_new_tokens=NEW_TOKENS)


def prompt_tokens(model: LocalChatModel, messages) -> int:
    return len(model.tokenizer(model.render(messages), add_special_tokens=False)["input_ids"])


def test_batch_returns_one_ai_message_with_usage_per_prompt(chat_model: LocalChatModel,
                                                           batched: list[AIMessage]) -> None:
    replies = batched
    assert len(replies) == 3
    for messages, reply in zip(PROMPTS, replies, strict=True):
        assert isinstance(reply, AIMessage)
        assert isinstance(reply.content, str) and reply.content.strip()
        usage = reply.usage_metadata
        assert usage["input_tokens"] == prompt_tokens(chat_model, messages)  # padding not counted
        assert 1 <= usage["output_tokens"] <= NEW_TOKENS
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert len({r.usage_metadata["input_tokens"] for r in replies}) == 3


def test_prompts_are_left_padded(chat_model: LocalChatModel) -> None:
    encoded = chat_model.encode([chat_model.render(m) for m in PROMPTS])
    mask, ids = encoded["attention_mask"], encoded["input_ids"]
    assert bool(mask[:, -1].all()), "every row must end with a real token (generation continues there)"
    short = int(np.argmin(mask.sum(dim=1).tolist()))
    padding = int((mask[short] == 0).sum())
    assert padding > 10 and not bool(mask[short, :padding].any())
    assert bool((ids[short, :padding] == chat_model.tokenizer.pad_token_id).all())


def test_greedy_batch_equals_single_calls_in_float32(float32_model: LocalChatModel) -> None:
    together = [m.content for m in float32_model.batch(PROMPTS)]
    single = [float32_model.invoke(m).content for m in PROMPTS]
    assert together == single


def test_greedy_batch_in_bfloat16_stays_close_to_single_calls(chat_model: LocalChatModel,
                                                             batched: list[AIMessage]) -> None:
    """bfloat16 matmuls over padded rows round differently (about 3 significant digits), which
    can flip a near-tied greedy choice after a few tokens, so whole greedy replies may part ways
    (on one avx512_bf16 machine, after the first word); the float32 test above shows the padding
    itself is right. Here: the unpadded row is identical, every row starts alike, and each
    padded row's next-token log-probabilities stay within bfloat16 rounding of its own unpadded
    pass (measured: at most 0.13 nats on the top 10 tokens)."""
    import torch

    together = [m.content for m in batched]
    single = [chat_model.batch([p], max_new_tokens=NEW_TOKENS)[0].content for p in PROMPTS]
    longest = int(np.argmax([prompt_tokens(chat_model, p) for p in PROMPTS]))
    assert together[longest] == single[longest]
    for a, b in zip(together, single, strict=True):
        assert words(a)[:1] == words(b)[:1], (a, b)
    with torch.inference_mode():
        padded = torch.log_softmax(chat_model.lm(**chat_model.encode(
            [chat_model.render(p) for p in PROMPTS])).logits[:, -1].float(), dim=-1)
        for row, prompt in enumerate(PROMPTS):
            alone = torch.log_softmax(chat_model.lm(**chat_model.encode(
                [chat_model.render(prompt)])).logits[0, -1].float(), dim=-1)
            top = torch.topk(alone, 10).indices
            assert float((padded[row, top] - alone[top]).abs().max()) < 0.25, row
            assert int(padded[row].argmax()) == int(alone.argmax()), row


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_seeded_sampling_is_reproducible(chat_model: LocalChatModel) -> None:
    sampler = chat_model.model_copy(update={"temperature": 1.0, "top_p": 1.0})
    assert sampler.lm is chat_model.lm  # the copy shares the loaded weights
    prompt = PROMPTS[2]
    first = [m.content for m in sampler.batch([prompt] * 2, seed=123, max_new_tokens=8)]
    again = [m.content for m in sampler.batch([prompt] * 2, seed=123, max_new_tokens=8)]
    assert first == again


def test_choice_probabilities_are_probabilities(chat_model: LocalChatModel) -> None:
    rows = chat_model.choice_probabilities([JUDGE, *PROMPTS], DIGITS)
    assert rows.shape == (4, 5)
    assert np.all(rows >= 0) and np.all(rows.sum(axis=1) <= 1 + 1e-6)
    # Asked for a digit, the model puts far more mass on the digits than after other prompts.
    assert rows[0].sum() > 0.05
    assert rows[0].sum() > 20 * rows[1:].sum(axis=1).max()


def test_choice_probabilities_do_not_depend_on_batch_padding(float32_model: LocalChatModel) -> None:
    together = float32_model.choice_probabilities([JUDGE, *PROMPTS], DIGITS)
    alone = np.array([float32_model.choice_probabilities([c], DIGITS)[0] for c in [JUDGE, *PROMPTS]])
    np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-7)


def test_multi_token_choices_are_refused(chat_model: LocalChatModel) -> None:
    with pytest.raises(ValueError, match="one token"):
        chat_model.choice_probabilities([JUDGE], ("excellent", "terrible"))


def test_streaming_reports_each_rows_text_as_it_grows(chat_model: LocalChatModel) -> None:
    seen: dict[int, list[str]] = {}
    done = chat_model.complete(PROMPTS, seed=3, max_new_tokens=NEW_TOKENS,
                               on_text=lambda index, text: seen.setdefault(index, []).append(text))
    assert sorted(seen) == [0, 1, 2]
    for index, completion in enumerate(done):
        texts = seen[index]
        assert len(texts) > 2, "a reply arrived in one piece, not token by token"
        assert texts[-1] == completion.text
        assert all(len(a) <= len(b) for a, b in itertools.pairwise(texts))
