"""The DRY window for llama-server (agents/models/copy_penalty.py): from the first text a reply
must not copy, after the speaker's persona facts, to the end of the rendered prompt. The real
server's side is in tests/test_llamacpp.py."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agents.models.blocking import Avoid
from agents.models.copy_penalty import copy_window, dry_fields, window_start
from agents.models.messages import to_chat

PROMPT = ("You are Uma.\n- I keep bees.\n- I sing in a choir.\nThings you remember:\n- Bees hate rain.\n"
          "Be kind to Felix.\nuser: I keep bees too!")


@pytest.mark.fast
def test_the_window_starts_at_the_first_text_to_avoid_after_the_persona_facts() -> None:
    avoid = Avoid(texts=("I keep bees too!", "Bees hate rain.", "Be kind to Felix."),
                  allowed=("I keep bees.", "I sing in a choir."))
    assert window_start(PROMPT, avoid) == PROMPT.index("Bees hate rain.")


@pytest.mark.fast
def test_a_text_to_avoid_inside_the_persona_does_not_open_the_window_there() -> None:
    # "I keep bees" is a history line and a persona fact: only its later copy counts
    avoid = Avoid(texts=("I keep bees",), allowed=("I keep bees.", "I sing in a choir."))
    assert window_start(PROMPT, avoid) == PROMPT.index("I keep bees too!")


@pytest.mark.fast
def test_no_text_to_avoid_in_the_prompt_means_no_window() -> None:
    assert window_start(PROMPT, Avoid(texts=("Not here.",), allowed=())) is None
    assert window_start(PROMPT, Avoid()) is None


def test_the_window_counts_the_tail_in_the_model_s_tokens(chat_model) -> None:
    tokenizer = chat_model.tokenizer
    messages = [SystemMessage("You are Uma.\n- I keep bees.\nThings you remember:\n- Bees hate rain."),
                HumanMessage("Hello Uma."), AIMessage("Hi! Bees are my life."), HumanMessage("Tell me more.")]
    avoid = Avoid(texts=("Bees hate rain.", "Hello Uma.", "Hi! Bees are my life.", "Tell me more."),
                  allowed=("I keep bees.",))
    prompt = tokenizer.apply_chat_template(to_chat(messages), add_generation_prompt=True, tokenize=False)
    tail = prompt[prompt.index("Bees hate rain."):]
    window = copy_window(tokenizer, messages, avoid)
    assert window == len(tokenizer.encode(tail, add_special_tokens=False))
    assert 0 < window < len(tokenizer.encode(prompt, add_special_tokens=False))


@pytest.mark.fast
def test_dry_fields_penalise_the_n_gram_the_in_process_blocker_forbids() -> None:
    fields = dry_fields(120, 48, 4, 3.0)  # the window outlasts a 48-token reply
    assert fields["dry_allowed_length"] == 3 and fields["dry_penalty_last_n"] == 168
    assert fields["dry_multiplier"] == 3.0 and fields["dry_sequence_breakers"] == ["\n"]
    assert dry_fields(0, 48, 4, 3.0) == {} and dry_fields(120, 48, 4, 0.0) == {}
    assert dry_fields(120, 48, 0, 3.0) == {}
