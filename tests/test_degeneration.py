"""The degeneration measures (agents/degeneration.py) the benchmarks, report.md and the loop
read: each catches its failure on lines taken from real runs and passes lines that do not fail."""

from __future__ import annotations

import pytest

from agents.degeneration import degeneration, reintroductions, run_degeneration

pytestmark = pytest.mark.fast
IRIS, HANA = "Iris Medina", "Hana Garcia"


def test_a_reworded_self_introduction_counts_as_a_reintroduction() -> None:
    speakers = [IRIS, HANA, IRIS, HANA, IRIS]
    texts = ["I'm Iris, a paramedic in Hobart.", "I'm Hana, nice to meet you.",
             "I'm Iris. I work in Australia and my job is paramedicine.", "What do you enjoy?",
             "My name is Iris and I work in Melbourne."]
    assert reintroductions(speakers, texts) == (2, 4)
    assert reintroductions([IRIS, HANA], ["I'm Iris.", "Hi Iris, I'm Hana."]) == ()
    assert reintroductions([IRIS, HANA, IRIS], ["Hi!", "I'm Hana.", "Nice to meet you, Hana."]) == ()


def test_repeats_and_self_address_are_found_by_line() -> None:
    speakers = [IRIS, HANA, IRIS, HANA]
    texts = ["Iris here, I love free diving.", "I love free diving too!", "Do you dive often?",
             "I love free diving too!"]
    measured = degeneration(speakers, texts)
    assert measured.self_addressed == (0,) and measured.repeats == (3,) and measured.has_repeat


def test_telling_the_listener_they_have_the_speakers_name_is_self_address() -> None:
    # from a model=llamacpp default run: Hana Garcia, speaking to Paolo Varga
    speakers = [HANA, IRIS, HANA, IRIS]
    texts = ["I'm so glad you enjoyed my chat today! You are Hana, from Tampere.",
             "You're Hana, and I'm glad we met.", "You're handing me a gift?", "Are you Hana's sister?"]
    assert degeneration(speakers, texts).self_addressed == (0,)


def test_run_shares_count_episodes_and_lines() -> None:
    looping = ([IRIS, HANA, IRIS], ["I'm Iris.", "Hello.", "I'm Iris, a paramedic."], 3, "max_turns")
    fine = ([IRIS, HANA], ["I'm Iris.", "I'm Hana, a teacher."], 2, "goodbye")
    run = run_degeneration([looping, fine])
    assert run.reintroduction_share == 0.5 and run.repeat_share == 0.0 and run.self_address_share == 0.0
    assert run.mean_turns == 2.5 and run.stop_reasons == {"max_turns": 1, "goodbye": 1}
