"""Control flow of the one batched turn, the engine and the society, with a fake per seam
(tests/fakes.py): no model loads, so these run in seconds (`pytest -m fast`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.character import Character
from agents.chat import ChatSession, ChatSettings
from agents.persona import Persona
from agents.prompting import PromptBuilder
from agents.turns import CallStats, Sampling, TurnRequest, TurnSettings, take_turns
from core.records import MemoryRecord, Reply
from core.rng import RngTree
from environment.engine import ConversationEngine, EpisodePlan
from environment.society import Society
from environment.store import SQLiteEpisodeStore
from matching.policies import RandomPairing
from tests.fakes import FlatCritic, InMemoryMemoryStore, ScriptedChatModel, says

pytestmark = pytest.mark.fast
PROMPTS = PromptBuilder()


def person(index: int) -> Persona:
    return Persona(id=f"p{index}", name=f"Person {index}", facts=(f"I collect stamp number {index}.",))


def character(index: int, memory=None, model=None, adapter: str = "") -> Character:
    return Character(person(index), memory or InMemoryMemoryStore(),
                     model or ScriptedChatModel(says("Hello there, nice to meet you.")), adapter=adapter)


def request(speaker: Character, partner: str = "Person 9", role: str = "peer") -> TurnRequest:
    return TurnRequest(speaker, (("Person 9", "Hi! What do you like to do?"),), partner, role)


def test_only_rejected_replies_are_asked_again_and_every_attempt_counts() -> None:
    model = ScriptedChatModel(lambda messages, number: "" if number == 0 else "I like long walks by the sea.")
    speakers = [character(0, model=model), character(1, model=model)]
    replies = take_turns([request(s) for s in speakers], PROMPTS, TurnSettings(retries=2), 0.0, Sampling(5))
    assert [r.text for r in replies] == ["I like long walks by the sea."] * 2
    assert [c["size"] for c in model.calls] == [2, 2]  # both failed at first, so both are retried
    assert [c["seed"] for c in model.calls] == [[5, 6], [6, 7]]  # row i: seed + i; a retry: the next seed
    assert all(r.completion_tokens == 7 for r in replies)  # the 7 words of the one accepted reply
    assert all(r.prompt_tokens > 0 for r in replies)


def test_a_reply_that_never_passes_stays_an_error() -> None:
    model = ScriptedChatModel(says("As an AI language model I cannot say."))
    reply = take_turns([request(character(0, model=model))], PROMPTS, TurnSettings(retries=1), 0.0,
                       Sampling(0))[0]
    assert not reply.ok and "AI" in reply.error and len(model.calls) == 2


def test_one_recall_per_memory_store_and_one_call_per_model() -> None:
    store_a, store_b = InMemoryMemoryStore(), InMemoryMemoryStore()
    for store, index in ((store_a, 0), (store_b, 2)):
        store.add([MemoryRecord(f"p{index}", "I once sailed to Crete.", "seed", 0.5, 0.0)])
    model_a, model_b = ScriptedChatModel(says("Sailing is lovely.")), ScriptedChatModel(says("Hello again."))
    speakers = [character(0, store_a, model_a, "chat:1"), character(1, store_a, model_b),
                character(2, store_b, model_a), character(3, store_b, model_b)]
    replies = take_turns([request(s) for s in speakers], PROMPTS, TurnSettings(), 0.0, Sampling(0))
    assert (store_a.searches, store_b.searches) == (1, 1)
    assert [c["size"] for c in model_a.calls] == [2] and [c["size"] for c in model_b.calls] == [2]
    assert model_a.calls[0]["adapters"] == ["chat:1", ""] and model_b.calls[0]["adapters"] is None
    assert [m.text for m in replies[0].recalled] == ["I once sailed to Crete."] and not replies[1].recalled


def test_streamed_text_reaches_the_callers_own_index_and_stats_add_up() -> None:
    model = ScriptedChatModel(lambda messages, number: "Fine, thanks." if number else "")
    seen: dict[int, str] = {}
    stats = CallStats(keep_prompts=True)
    speakers = [character(i, model=model) for i in range(3)]
    take_turns([request(s) for s in speakers], PROMPTS, TurnSettings(), 0.0, Sampling(0),
               on_text=lambda index, text: seen.__setitem__(index, text), stats=stats)
    assert seen == {0: "Fine, thanks.", 1: "Fine, thanks.", 2: "Fine, thanks."}
    assert stats.model_calls == 2 and len(stats.prompts) == 6
    assert stats.completion_tokens == 3 * len(["Fine,", "thanks."])


def plan(index: int, a: Character, b: Character) -> EpisodePlan:
    return EpisodePlan(f"r000-e{index:03d}", 0, (a, b), {a.name: "peer", b.name: "peer"})


def test_the_engine_stops_each_episode_on_its_own_rule() -> None:
    lines = {"Person 0": ["I love hiking in the hills.", "Goodbye, take care!"],
             "Person 2": ["I read books about the sea.", "I read books about the sea."],
             "Person 4": ["", "", ""]}

    def script(messages, number):  # by the speaker's own earlier lines: episodes run concurrently
        speaker = str(messages[0].content).split("You are ")[1].split(".")[0].split(",")[0]
        said = lines.get(speaker, ["Tell me more about that, please."])
        return said[min(sum(m.type == "ai" for m in messages), len(said) - 1)]

    model = ScriptedChatModel(script)
    people = [character(i, model=model) for i in range(6)]
    engine = ConversationEngine(PROMPTS, max_turns=6, min_turns=2, retries=0, progress=False)
    episodes = engine.run([plan(i, people[2 * i], people[2 * i + 1]) for i in range(3)], RngTree(0), 0.0)
    assert [e.stop_reason for e in episodes] == ["goodbye", "repetition", "failed_reply"]
    assert [len(e.turns) for e in episodes] == [3, 3, 1]
    assert episodes[2].turns[0].failed and episodes[2].turns[0].error


def test_goals_in_self_play_come_from_the_goal_stream() -> None:
    model = ScriptedChatModel(says("That sounds wonderful, tell me more."))
    people = [character(i, model=model) for i in range(2)]
    engine = ConversationEngine(PROMPTS, max_turns=4, min_turns=4, repetition_threshold=1.1, goals="policy",
                                progress=False)
    first = engine.run([plan(0, *people)], RngTree(3), 0.0)[0]
    again = engine.run([plan(0, *people)], RngTree(3), 0.0)[0]
    goals = [t.goal for t in first.turns]
    assert all(goals[0::2]) and not any(goals[1::2]) and goals == [t.goal for t in again.turns]


def society(path: Path, seed: int, engine: ConversationEngine | None = None) -> Society:
    memory = InMemoryMemoryStore()
    model = ScriptedChatModel(says("I grow tomatoes on my balcony every summer."))
    people = [character(i, memory, model) for i in range(5)]
    engine = engine or ConversationEngine(PROMPTS, max_turns=2, min_turns=1, progress=False)
    return Society(people, RandomPairing(), engine, FlatCritic(), SQLiteEpisodeStore(path), RngTree(seed))


def test_a_round_stores_scored_episodes_and_their_memories(tmp_path: Path) -> None:
    world = society(tmp_path / "s.sqlite", 1)
    kept = world.run_round(0)
    assert len(kept) == 2 and world.store.count() == 2 and world.store.completed_rounds() == 1
    assert all(e.scores is not None and e.scores.overall == 3.0 for e in world.store.episodes())
    memory = world.characters[0].memory
    assert {r.episode_id for _, r in memory.records} == {e.id for e in kept}


class _StopAfter(ConversationEngine):
    """Ctrl-C after the first episode of the round has finished."""

    def run(self, plans, rng, now, budget=None, stored=None, on_finished=None):
        from environment.engine import Interrupted

        finished = super().run(plans, rng, now, budget, stored)  # nothing committed as it finished
        raise Interrupted(finished[:1])


def test_a_resumed_round_replays_the_same_pairs_without_duplicates(tmp_path: Path) -> None:
    reference = society(tmp_path / "reference.sqlite", 15)
    for index in range(3):
        reference.run_round(index)
    path = tmp_path / "resumed.sqlite"
    first = society(path, 15)
    first.run_round(0)
    first.run_round(1)
    with pytest.raises(KeyboardInterrupt):
        society(path, 15, _StopAfter(PROMPTS, max_turns=2, min_turns=1, progress=False)).run_round(2)
    resumed = society(path, 15)
    resumed.run_round(2)
    assert [e.participants for e in resumed.store.episodes()] == \
        [e.participants for e in reference.store.episodes()]
    assert resumed.store.count() == reference.store.count() == 6


def test_a_chat_session_remembers_only_successful_exchanges() -> None:
    memory = InMemoryMemoryStore()
    model = ScriptedChatModel(lambda messages, number: "" if number < 3 else "I feed the ducks on Sundays.")
    session = ChatSession(character(0, memory, model), ChatSettings(retries=2), PROMPTS, now=0.0)
    failed = session.send("What do you do on weekends?")
    assert not failed.ok and memory.count() == 0 and session.history == []
    answered = session.send("And on Sundays?")
    assert answered.ok and memory.count("p0") == 1 and len(session.history) == 2


def test_the_ab_cohort_is_drawn_once_and_kept_in_characters_jsonl(tmp_path: Path) -> None:
    """A resumed run must not redraw its cohort: the cohort is stored with the personas."""
    from hydra import compose, initialize_config_dir

    from environment import build
    from environment.tasks.simulate import society_personas

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["society.size=8"])
    plan = build.AdapterPlan(folders={"chat:1": "unused"}, cohort="chat:1", cohort_share=0.5)
    first = society_personas(cfg, tmp_path, RngTree(4), plan)
    cohort = [p.id for p in first if build.in_cohort(p)]
    assert len(cohort) == 4
    again = society_personas(cfg, tmp_path, RngTree(99), plan)  # another seed: read back, not drawn
    assert [p.id for p in again if build.in_cohort(p)] == cohort
    characters = build.build_characters(again, InMemoryMemoryStore(), ScriptedChatModel(says("Hi.")), plan)
    assert {c.id for c in characters if c.adapter == "chat:1"} == set(cohort)
    assert all(c.cohort == ("adapter" if c.id in cohort else "base") for c in characters)


def test_protective_questions_are_asked_without_the_planted_answers() -> None:
    """The interview's hallucination proxy must not count a recalled "I have never heard of X"."""
    from agents.interview import Session, Withholding, run_interview

    planted = "I have never heard of a smartphone, so I cannot say anything about it."
    memory = InMemoryMemoryStore()
    asked = f'Someone once asked me: "What is a smartphone?" {planted}'
    memory.add([MemoryRecord("p0", asked, "seed", 0.8, 0.0),
                MemoryRecord("p0", "I sailed to Crete in my youth.", "seed", 0.8, 0.0)])
    seen: list[str] = []

    def script(messages, number):
        seen.append("\n".join(str(m.content) for m in messages))
        return "I would not know about such a thing."

    persona = Persona(id="p0", name="Person 0", facts=("I am a sailor.",),
                      extra={"protective_scenes": [{"question": "What is a smartphone?", "answer": planted}]})
    speaker = Character(persona, memory, ScriptedChatModel(script))
    sessions = [Session("p000", "protective", ("What is a smartphone?",)), Session("q000", "life", ("Hi?",))]
    transcripts = run_interview(speaker, sessions, ChatSettings(), PROMPTS, 0.0, 0)
    assert all(t.answers for t in transcripts)
    assert planted not in seen[0] and "Crete" in seen[0]  # the protective question: withheld
    assert planted in seen[1]  # any other question recalls it as usual
    assert Withholding(memory, (planted,)).search("p0", "smartphone", 5, 0.0)[0].text.startswith("I sailed")


class _SeedSpeaker(ScriptedChatModel):
    """Says a line made from each row's seed, after a random pause (the interleaving varies)."""

    def complete(self, conversations, *, seed=None, candidates=1, **_):  # type: ignore[override]
        import random
        import time

        time.sleep(random.random() / 200)
        seeds = [seed + i for i in range(len(conversations))] if isinstance(seed, int) else list(seed)
        return [Reply(text=f"My lucky number is {s % 9973} and {k}.", completion_tokens=8)
                for s in seeds for k in range(candidates)]


def test_independent_episodes_say_the_same_whatever_the_interleaving() -> None:
    """Each episode draws its seeds from its own stream (keyed by its id): the same texts when
    episodes run one at a time, all at once, or in lockstep (one batch of every episode a step)."""
    people = [character(i, model=_SeedSpeaker(says(""))) for i in range(12)]
    plans = [plan(i, people[2 * i], people[2 * i + 1]) for i in range(6)]

    def texts(**settings: object) -> list[list[str]]:
        engine = ConversationEngine(PROMPTS, max_turns=4, min_turns=4, repetition_threshold=1.1,
                                    progress=False, **settings)
        return [[t.text for t in e.turns] for e in engine.run(plans, RngTree(5), 0.0)]

    alone, together = texts(concurrency=1), texts(concurrency=6)
    assert alone == together and len({tuple(t) for t in alone}) == 6
    assert texts(schedule="lockstep") == alone
    assert texts(concurrency=6) != [[t.text for t in e.turns] for e in ConversationEngine(
        PROMPTS, max_turns=4, min_turns=4, repetition_threshold=1.1, progress=False).run(
        plans, RngTree(6), 0.0)]  # another seed, other texts: the test can tell


def test_schedule_auto_is_lockstep_in_process_and_independent_on_servers() -> None:
    """`conversation.schedule=auto` (the default) through Hydra's compose and the composition root."""
    from hydra import compose, initialize_config_dir

    from environment import build

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        schedules = {model: build.build_engine(compose("config", overrides=[f"model={model}"])).schedule
                     for model in ("local", "llamacpp", "openai")}
        chosen = compose("config", overrides=["conversation.schedule=independent"])
    chosen = build.build_engine(chosen).schedule
    assert schedules == {"local": "lockstep", "llamacpp": "independent", "openai": "independent"}
    assert chosen == "independent"


def test_memories_last_moves_memories_and_goal_to_the_newest_message() -> None:
    """`conversation.prompts.memories_last=true` through Hydra's compose and the composition root:
    the system prompt no longer changes with each turn's memories, so turns extend one prefix."""
    from hydra import compose, initialize_config_dir

    from agents.turns import prompt_for
    from core.records import Recalled
    from environment import build

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        on = compose("config", overrides=["conversation.prompts.memories_last=true"])
        off = compose("config")
    speaker = character(0)
    asked = TurnRequest(speaker, (("Person 1", "Hi there."),), "Person 1", "peer", goal="ask a question")
    found = [Recalled("m1", "I once sailed to Crete.", "seed", 1.0, 1.0, {})]
    last = prompt_for(build.build_prompts(on), asked, found)
    first = prompt_for(build.build_prompts(off), asked, found)
    assert "Crete" not in str(last[0].content) and "Crete" in str(last[-1].content)
    assert "In your next reply, ask a question." in str(last[-1].content) and last[-1].type == "system"
    assert "Crete" in str(first[0].content) and first[-1].type == "human" and len(first) == len(last) - 1


@pytest.mark.parametrize("schedule", ["independent", "lockstep"])
def test_a_model_failure_keeps_the_finished_episodes_and_memories(tmp_path: Path, schedule: str) -> None:
    """A server that stops answering ends the round with its error (one line at the CLI); the
    episodes that had finished are stored and remembered, the round stays open for resume."""
    from core.errors import ModelCallFailed

    def script(messages, number):  # Person 0 ends its episode at once; Person 3's turn fails
        speaker = str(messages[0].content).split("You are ")[1].split(".")[0].split(",")[0]
        if speaker == "Person 3":
            raise ModelCallFailed("the server did not answer")
        return "Goodbye, take care!" if speaker == "Person 0" else "I grow tomatoes on my balcony."

    memory, model = InMemoryMemoryStore(), ScriptedChatModel(script)
    people = [character(i, memory, model) for i in range(4)]
    engine = ConversationEngine(PROMPTS, max_turns=6, min_turns=1, progress=False, schedule=schedule)
    plans = [plan(0, people[0], people[1]), plan(1, people[2], people[3])]
    world = Society(people, RandomPairing(), engine, FlatCritic(), SQLiteEpisodeStore(tmp_path / "s.sqlite"),
                    RngTree(0))
    world.plan_round = lambda index, graph=None: plans  # the pairs this test needs
    with pytest.raises(ModelCallFailed, match="did not answer"):
        world.run_round(0)
    assert [(e.id, e.stop_reason) for e in world.store.episodes()] == [("r000-e000", "goodbye")]
    assert world.store.completed_rounds() == 0
    assert {r.episode_id for _, r in memory.records if r.episode_id} == {"r000-e000"}
