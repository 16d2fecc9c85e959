"""Turn-level preference pairs (training/turn_pairs.py) with the default critic as
conf/critic/default.yaml builds it and the real MiniLM: a pair is two candidates of one turn,
from the prompt that turn's speaker saw; the candidate that copies the partner loses."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from agents.persona import Persona
from agents.prompting import PromptBuilder
from core.records import Candidate, Episode, Scene, Turn
from tests.conftest import ROOT
from training.datasets import CharacterSplit, Target, reply_context
from training.runs import Run, RunData
from training.turn_pairs import build_turn_preference_dataset

ANN = Persona(id="c1", name="Ann Lee", facts=("i work nights as a nurse.", "i have two dogs."))
BOB = Persona(id="c2", name="Bob Ray", facts=("i repair bicycles.", "i love jazz."))
SPOKEN = "Do you ever ride to the hospital on one of your bikes?"
COPY = "Hello Ann! I repair bicycles in a shop in town."
SELF = "Ann here, and I walk my dogs after night shifts."
ANSWER = "Sometimes, when the weather is good, and I play jazz on the way."


def run_data() -> RunData:
    turns = (
        Turn("Ann Lee", "Hi, I'm Ann. I work nights at the hospital."),
        Turn("Bob Ray", COPY),
        Turn("Ann Lee", SPOKEN,
             candidates=(Candidate(SPOKEN, 0.9), Candidate(COPY, 0.2), Candidate(SELF, 0.1))),
        Turn("Bob Ray", ANSWER, candidates=(Candidate(ANSWER, 0.8), Candidate(SPOKEN, 0.3))),
        Turn("Ann Lee", "That sounds lovely."),  # one candidate: no pair
    )
    names = ("Ann Lee", "Bob Ray")
    episode = Episode(id="run/r000-e000", round=0, participants=names, personas={"Ann Lee": ANN.facts,
                      "Bob Ray": BOB.facts}, roles={n: "peer" for n in names}, turns=turns, model="test",
                      character_ids={"Ann Lee": "c1", "Bob Ray": "c2"}, scene=Scene("a cafe", "rain"),
                      meta={"run": "run"})
    return RunData((Run("run", "run", (episode,), {"Ann Lee": ANN, "Bob Ray": BOB}, {}),))


def test_a_pair_is_two_candidates_of_one_turn_from_its_own_prompt(embedder) -> None:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config")
    critic = instantiate(cfg.critic)(embedder=embedder, model=None)
    data, prompts = run_data(), PromptBuilder()
    split = CharacterSplit(frozenset({"c1"}), frozenset({"c2"}))
    built = build_turn_preference_dataset(data, critic, prompts, split)
    assert built.card["settings"]["turns_with_candidates"] == 2
    assert built.dataset["train"].num_rows == built.dataset["eval"].num_rows == 1
    answer = built.dataset["eval"][0]  # Bob's turn: copying Ann's question loses
    assert (answer["chosen"][0]["content"], answer["rejected"][0]["content"]) == (ANSWER, SPOKEN)
    row = built.dataset["train"][0]
    candidates = {c.text for c in data.episodes[0].turns[2].candidates}
    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    assert {chosen, rejected} <= candidates and chosen != rejected
    assert chosen == SPOKEN and rejected in (COPY, SELF)  # copying or self-address loses
    context, _ = reply_context(data, Target(data.episodes[0], 2))
    expected = prompts.reply_messages(context)
    assert [m["content"] for m in row["prompt"]] == [m.content for m in expected]
    assert row["chosen_overall"] > row["rejected_overall"]


SYCOPHANT = ["I'm so glad to hear that!", "That sounds amazing, I'm so proud of you.",
             "I'm so grateful for your support.", "What a wonderful journey you have had!"]


def salon_like(episode: Episode, shift: int) -> Episode:
    """The dialogue with its lines swapped for the bundled model's sycophantic register."""
    turns = tuple(Turn(t.speaker, SYCOPHANT[(i + shift) % len(SYCOPHANT)])
                  for i, t in enumerate(episode.turns))
    return Episode(id=f"{episode.id}-salon", round=0, participants=episode.participants,
                   personas=episode.personas, roles=episode.roles, turns=turns, model="test")


def test_the_discriminator_trains_and_scores_on_a_tiny_set(tmp_path) -> None:
    import pytest

    from agents.importers import personachat_episodes, personachat_personas, read_personachat
    from tests.conftest import PERSONACHAT
    from training.discriminator import discriminator_auc, train_discriminator
    from training.scorers import CrossEncoderConfig

    if not PERSONACHAT.is_file():
        pytest.skip("needs ../shared/data (Persona-Chat)")
    found = read_personachat(PERSONACHAT, "dev")[40:64]
    human = personachat_episodes(found, personachat_personas(found))
    salon = [salon_like(e, i) for i, e in enumerate(human)]
    config = CrossEncoderConfig(output=str(tmp_path / "discriminator"), epochs=1.0, batch_size=8)
    trained = train_discriminator(human[:16], salon[:16], config, seed=0)
    assert trained.path.is_dir() and 0.0 <= trained.metrics["auc"] <= 1.0
    unseen = discriminator_auc(trained.path, salon[16:], human[16:])
    assert unseen > 0.8, unseen  # sycophantic filler is told from human chat it never saw
