"""Cleaning untrusted model replies: keep what the speaker said, reject what is unusable."""

from __future__ import annotations

import pytest

from agents.chat import ReplyStream
from agents.replies import clean_reply, is_goodbye, is_repetition, settled_sentences, whole_sentences

pytestmark = pytest.mark.fast


def cleaned(raw: str, speaker: str = "Anna Berg", partner: str = "Bob Stone", limit: int = 3) -> str:
    result = clean_reply(raw, speaker, partner, limit)
    assert not result.error, result.error
    return result.text


def rejected(raw: str, speaker: str = "Anna Berg", partner: str = "Bob Stone") -> str:
    result = clean_reply(raw, speaker, partner)
    assert result.text == "" and result.error, f"accepted: {result.text!r}"
    return result.error


@pytest.mark.parametrize("raw", [
    "Anna Berg: Hello there.", "anna berg : Hello there.", "Anna: Hello there.",
    "Assistant: Hello there.", "Me: Hello there.", '  "Hello there."  ', '"Hello there.',
])
def test_name_prefix_and_wrapping_quotes_are_removed(raw: str) -> None:
    assert cleaned(raw) == "Hello there."


def test_quotes_inside_the_reply_are_kept() -> None:
    assert cleaned('She said "yes." Then she left.') == 'She said "yes." Then she left.'
    assert cleaned("I told him 'no.' He laughed.") == "I told him 'no.' He laughed."
    assert cleaned('"Fine," I said. It was not fine.') == '"Fine," I said. It was not fine.'


@pytest.mark.parametrize("raw", [
    "How are you? I baked today.\nBob Stone: I'm fine, thanks.",
    "How are you? I baked today.\nBob: I'm fine, thanks.",
    "How are you? I baked today. <|im_end|><|im_start|>user\nFine.",
    "How are you? I baked today. User: fine",
    "How are you? I baked today.\n\nBob nods and smiles.",
])
def test_a_leaked_next_turn_is_cut_off(raw: str) -> None:
    assert cleaned(raw) == "How are you? I baked today."


def test_only_whole_sentences_are_kept_up_to_the_limit() -> None:
    raw = "I love bread. Do you bake? My oven is old! It smokes… And yesterday the"
    assert cleaned(raw, limit=3) == "I love bread. Do you bake? My oven is old!"
    assert cleaned(raw, limit=10) == "I love bread. Do you bake? My oven is old! It smokes…"
    assert cleaned("I love bread. And yesterday the") == "I love bread."
    # A single unfinished sentence is all there is: it is kept rather than dropped.
    assert cleaned("I love bread and") == "I love bread and"
    assert whole_sentences("One.  Two!   Three?", 2) == "One. Two!"


def test_whitespace_is_normalised() -> None:
    assert cleaned("  I love\tbread.   Do you?  ") == "I love bread. Do you?"


@pytest.mark.parametrize("raw", ["", "   ", "...", "?! ... !!", "12 34.", "<|im_end|>", "<|im_start|>user"])
def test_empty_or_garbage_replies_are_rejected(raw: str) -> None:
    assert "empty or unreadable" in rejected(raw)


@pytest.mark.parametrize("raw", ["Bob Stone: I am fine.", "Bob: I am fine.", "bob stone : I am fine."])
def test_a_reply_in_the_partners_name_is_rejected(raw: str) -> None:
    assert "partner" in rejected(raw)


@pytest.mark.parametrize("raw", [
    # read in default runs (2026-12-02): Leila Laurent and Hana Garcia lose their names
    "I've been working with people around the globe. My name is Aisha, by the way!",
    "I am Anna, from Tampere. My name is Hanna-Ellea.",
    "Please, call me Greta.",
])
def test_a_reply_that_gives_its_speaker_another_name_is_rejected(raw: str) -> None:
    assert "another name" in rejected(raw)


@pytest.mark.parametrize("raw", ["My name is Anna, nice to meet you.", "Call me Berg, everyone does.",
                                 "My name is not important.", "I'm Glad you came."])
def test_a_reply_that_gives_its_speakers_own_name_is_kept(raw: str) -> None:
    assert cleaned(raw)


@pytest.mark.parametrize("raw", [
    "As an AI, I don't have a day.", "As an AI language model I cannot eat bread.",
    "I'm just an AI, but I can help.", "I am an artificial intelligence.", "I'm a chatbot, sorry.",
    # read in a default run (2026-12-01)
    "I'm Emily, a creative writing assistant. I've been working on my own blog.",
    "I'm Emily the creative writing AI assistant. I love your enthusiasm.",
    "You're an AI assistant designed to support creative writing endeavors.",
    "I'm sorry I can help, but as a creative writing AI assistant, my primary function is to assist.",
    "I'm sorry to inform you that I am not a personal AI assistant.",
    "You're right, I'm more than just a chatbot!",  # read in a model=llamacpp run (2026-12-07)
])
def test_ai_disclaimers_are_rejected(raw: str) -> None:
    assert "AI" in rejected(raw)


@pytest.mark.parametrize("raw", [
    "My AI assistant at work is useless.", "I'm an aide at the clinic.",
    "I'm working on a chatbot for the bank.",
    "She was an airline pilot.", "I said goodbye to my old job last year.",
])
def test_ordinary_replies_are_not_mistaken_for_disclaimers(raw: str) -> None:
    assert cleaned(raw) == raw


@pytest.mark.parametrize("text", [
    "Goodbye!", "Good bye, Bob.", "Okay, bye for now.", "Bye-bye!", "Farewell, friend.",
    "I'll talk to you later.", "Talk soon!", "Take care!", "Take care of yourself.",
    "See you soon.", "See you!", "Great, see you tomorrow.",
])
def test_goodbyes_are_recognised(text: str) -> None:
    assert is_goodbye(text)


@pytest.mark.parametrize("text", [
    "How was your day?", "I take care of my mother on weekends.", "I see you like tea.",
    "Nice to see you!", "It's good to see you again.", "Maybe later I will bake.",
    "The byelaw says no dogs.", "I bought a new bike.",
])
def test_ordinary_lines_are_not_goodbyes(text: str) -> None:
    assert not is_goodbye(text)


def test_repetition_is_word_overlap_against_any_earlier_line() -> None:
    earlier = ["I love baking bread on Sundays.", "What do you do for fun?"]
    assert is_repetition("What do you do for FUN?!", earlier)
    assert is_repetition("i love baking bread on sundays", earlier)
    assert not is_repetition("I repair old bicycles in my garage.", earlier)
    assert not is_repetition("I love baking.", earlier)  # 3 of 6 words: below 0.8
    assert is_repetition("I love baking.", earlier, threshold=0.5)
    assert not is_repetition("Anything at all.", [])
    assert is_repetition("...", earlier)  # no words at all counts as repeating nothing new


REPLY = 'Ann: I love hiking. On weekends I go to the hills! What about you? I also like'


def test_a_sentence_settles_once_the_next_one_begins() -> None:
    assert settled_sentences("I love hiking.", "Ann", "User") == ""
    assert settled_sentences("I love hiking. On", "Ann", "User") == "I love hiking."
    assert settled_sentences(REPLY, "Ann", "User", max_sentences=2) == \
        "I love hiking. On weekends I go to the hills!"


@pytest.mark.parametrize("raw", ['"I love hiking. On', "User: hi there. How", "As an AI I cannot. But"])
def test_nothing_settles_while_cleaning_could_still_change_or_reject_it(raw: str) -> None:
    assert settled_sentences(raw, "Ann", "User") == ""


def test_a_reply_stream_sends_settled_text_once_and_the_rest_at_the_end() -> None:
    stream = ReplyStream("Ann", "User", max_sentences=3)
    deltas = [stream.feed(REPLY[:end]) for end in range(len(REPLY) + 1)]
    final = clean_reply(REPLY, "Ann", "User").text
    rest = stream.finish(final)
    sent = [d for d in deltas if d]
    assert sent == ["I love hiking.", " On weekends I go to the hills!", " What about you?"]
    assert rest == "" and "".join(deltas) == final
    stream = ReplyStream("Ann", "User", max_sentences=3)
    assert stream.feed("I love hiking. On weekends") == "I love hiking."
    assert stream.finish("I love hiking. On weekends, yes.") == " On weekends, yes."


def test_a_reply_stream_says_when_the_final_text_replaced_what_was_sent() -> None:
    stream = ReplyStream("Ann", "User", max_sentences=3)
    assert stream.feed("I love hiking. On") == "I love hiking."
    assert stream.feed("") == ""  # a retry starts over: nothing is withdrawn or re-sent
    assert stream.finish("Something else entirely.") is None
