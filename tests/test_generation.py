"""Generation that does not copy: the n-gram blocker with the real tokenizer and model, best of
n from one shared prompt pass, and the turn scorer's choice; the switches through Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from langchain_core.messages import HumanMessage, SystemMessage

from agents.character import Character
from agents.models.blocking import Avoid, NgramBlocker, banned_ngrams, ngrams_of, token_variants
from agents.models.local import LocalChatModel
from agents.persona import Persona
from agents.prompting import PromptBuilder
from agents.ranking import TurnContext, TurnRanker
from agents.turns import Sampling, TurnRequest, TurnSettings, take_turns
from environment.build import build_engine
from tests.fakes import ConstantEmbedder, InMemoryMemoryStore, ScriptedChatModel

ROOT = Path(__file__).resolve().parents[1]
HISTORY = "My grandmother taught me to bake rye bread every Sunday morning in her kitchen."
FACT = "I bake rye bread every Sunday morning."
PROMPTS = [[SystemMessage("You are Anna, a baker in Lyon."),
            HumanMessage("Hi Anna! Tell me about the bread you bake on Sundays.")],
           [HumanMessage("Say hello and tell me about your morning.")]]


@pytest.fixture(scope="module")
def float32_model(cache_dir) -> LocalChatModel:
    return LocalChatModel(cache_dir=str(cache_dir), temperature=0.0, dtype="float32", max_new_tokens=24)


def test_the_blocker_never_blocks_persona_facts_and_always_blocks_a_history_4gram(chat_model) -> None:
    tokenizer = chat_model.tokenizer
    table = banned_ngrams(tokenizer, Avoid((HISTORY,), (FACT,)), 4)
    fact_grams = ngrams_of([v for v in token_variants(tokenizer, FACT)], 4)
    history_grams = ngrams_of([v for v in token_variants(tokenizer, HISTORY)], 4)
    blocked = {(*prefix, token) for prefix, tokens in table.items() for token in tokens}
    assert blocked and not blocked & fact_grams  # a persona fact's n-grams are always allowed
    assert blocked == history_grams - fact_grams  # every other history 4-gram is blocked
    gram = next(iter(sorted(blocked)))
    prompt = torch.tensor([[7, 7, 7]])
    generated = torch.cat([prompt, torch.tensor([list(gram[:-1])])], dim=1)
    scores = NgramBlocker([table], 4, prompt_length=3)(generated, torch.zeros(1, len(tokenizer)))
    assert scores[0, gram[-1]] == float("-inf") and torch.isfinite(scores[0]).sum() == len(tokenizer) - len(
        table[gram[:-1]])


def test_a_reply_never_continues_a_blocked_4gram(float32_model: LocalChatModel) -> None:
    free = float32_model.complete(PROMPTS)
    avoid = [Avoid((r.text,), ()) for r in free]
    blocked = float32_model.complete(PROMPTS, avoid=avoid)
    tokenizer = float32_model.tokenizer
    for before, after in zip(free, blocked, strict=True):
        assert after.text != before.text
        banned = ngrams_of(token_variants(tokenizer, before.text), 4)
        produced = ngrams_of([tokenizer.encode(after.text, add_special_tokens=False)], 4)
        assert not banned & produced, (before.text, after.text)


def test_candidates_share_one_prompt_pass_and_match_single_greedy_calls(float32_model: LocalChatModel
                                                                       ) -> None:
    one = float32_model.complete(PROMPTS)
    three = float32_model.complete(PROMPTS, candidates=3)
    assert [r.text for r in three] == [one[0].text] * 3 + [one[1].text] * 3  # greedy: all alike
    assert [r.prompt_tokens > 0 for r in three] == [True, False, False] * 2  # the prompt read once
    sampled = float32_model.model_copy(update={"temperature": 1.0}).complete(PROMPTS, candidates=3, seed=4)
    assert len({r.text for r in sampled[:3]}) > 1  # sampling gives different candidates


class _Ranked:
    """A turn scorer that prefers the candidates in ``order`` (control-flow test)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def scores(self, contexts, candidates):
        return [[-float(self.order.index(c)) for c in options] for options in candidates]


def test_best_of_n_returns_the_candidate_the_scorer_ranks_first() -> None:
    lines = ["I bake bread for the whole street.", "Sundays are for long walks by the river.",
             "My oven is older than my car, honestly."]
    said = iter(lines * 3)
    model = ScriptedChatModel(lambda messages, number: next(said))
    persona = Persona(id="p0", name="Anna Roux", facts=(FACT,))
    character = Character(persona, InMemoryMemoryStore(), model)
    request = TurnRequest(character, (("Ben", "What do you do on Sundays?"),), "Ben", "peer")
    ranker = _Ranked([lines[1], lines[2], lines[0]])
    reply = take_turns([request], PromptBuilder(), TurnSettings(candidates=3), 0.0, Sampling(0),
                       ranker=ranker)[0]  # type: ignore[arg-type]
    assert reply.text == lines[1]
    assert [c.text for c in reply.candidates] == [lines[1], lines[2], lines[0]]
    assert model.calls[0]["candidates"] == 3 and reply.completion_tokens == sum(len(t.split()) for t in lines)


def test_the_turn_scorer_ranks_copies_and_self_address_last() -> None:
    ranker = TurnRanker(ConstantEmbedder())
    context = TurnContext("Anna Roux", "Do you like the river?", ("Do you like the river?",), (), (FACT,))
    options = ["Do you like the river?", "Anna, I love the river in spring.", "I walk by it every evening."]
    scores = ranker.scores([context], [options])[0]
    assert scores.index(max(scores)) == 2
    assert ranker.failures(context, options[0]) and ranker.failures(context, options[1])


def test_conversation_switches_reach_the_engine_through_hydra() -> None:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        default = compose("config")
        plain = compose("config", overrides=["conversation.candidates=1", "conversation.block_ngrams=0"])
    engine = build_engine(default, ConstantEmbedder())
    assert engine.turn.candidates == 3 and engine.turn.block_ngrams == 4
    assert isinstance(engine.ranker, TurnRanker) and isinstance(engine.ranker.embedder, ConstantEmbedder)
    off = build_engine(plain, ConstantEmbedder())
    assert (off.turn.candidates, off.turn.block_ngrams) == (1, 0)
