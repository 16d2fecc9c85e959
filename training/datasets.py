"""Training data from logged runs: chat examples (SFT), preference pairs (DPO), memory-selector
pairs and persona-compatibility pairs, split by character so evaluation is on characters the
model never trained on. Every builder returns the data together with its card."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk

from agents.models.messages import to_chat
from agents.models.registry import read_card
from agents.prompting import PromptBuilder, ReplyContext
from core.errors import UsageError, require
from core.files import publish_folder, staging_folder
from core.records import ROLES, Episode, Turn
from training.cards import listing, render_dataset_readme, utc_now, write_card
from training.runs import RunData, character_id

SPLITS = ("train", "eval")
MESSAGES = List({"role": Value("string"), "content": Value("string")})
TEXT, FLOAT, INT = Value("string"), Value("float64"), Value("int32")
CHAT_FEATURES = Features({"messages": MESSAGES, "episode_id": TEXT, "character": TEXT, "name": TEXT,
                          "role": TEXT, "overall": FLOAT, "turn": INT})
PREFERENCE_FEATURES = Features({
    "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "episode_id": TEXT,
    "rejected_episode_id": TEXT, "character": TEXT, "role": TEXT, "chosen_overall": FLOAT,
    "rejected_overall": FLOAT})
COMPATIBILITY_FEATURES = Features({"persona_a": TEXT, "persona_b": TEXT, "score": FLOAT, "a": TEXT,
                                   "b": TEXT, "a_role": TEXT, "b_role": TEXT, "episode_id": TEXT})


# ---------------------------------------------------------------- filters and targets


@dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes and turns become training examples. ``roles=()`` keeps every role;
    ``character`` is a persona id."""

    min_overall: float | None = None
    top_fraction: float | None = None
    roles: tuple[str, ...] = ()
    character: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        require(self.min_overall is None or 1.0 <= self.min_overall <= 5.0, "training.min_overall",
                "a number from 1 to 5, or null", self.min_overall)
        require(self.top_fraction is None or 0.0 < self.top_fraction <= 1.0, "training.top_fraction",
                "a number in (0, 1], or null", self.top_fraction)
        require(set(self.roles) <= set(ROLES), "training.roles", f"a list of {', '.join(ROLES)}",
                list(self.roles))
        require(self.character is None or bool(self.character), "training.character",
                "a persona id, or null", self.character)


@dataclass(frozen=True)
class Target:
    """One turn to learn to say: ``episode.turns[index]``."""

    episode: Episode
    index: int

    @property
    def turn(self) -> Turn:
        return self.episode.turns[self.index]

    @property
    def speaker(self) -> str:
        return self.turn.speaker

    @property
    def character(self) -> str:
        return character_id(self.episode, self.speaker)

    @property
    def partner(self) -> str:
        return next(name for name in self.episode.participants if name != self.speaker)

    @property
    def role(self) -> str:
        return self.episode.roles[self.speaker]

    @property
    def overall(self) -> float | None:
        return self.episode.scores.overall if self.episode.scores and self.episode.scores.rated else None


def select_episodes(episodes: Sequence[Episode], rule: EpisodeFilter) -> list[Episode]:
    """Episodes passing ``min_overall``, then the best ``top_fraction`` of them by overall."""
    kept = _nonempty(list(episodes), "the runs hold no episodes", "simulate first: python run.py")
    if rule.min_overall is None and rule.top_fraction is None:
        return kept
    kept = _nonempty([e for e in kept if e.scores], "no episode has scores",
                     "score them (python run.py task=score input=<episodes.jsonl>) or unset "
                     "training.min_overall and training.top_fraction")
    best = max(_overall(e) for e in kept)
    if rule.min_overall is not None:
        kept = _nonempty([e for e in kept if _overall(e) >= rule.min_overall],
                         f"training.min_overall={rule.min_overall} left no episodes (the best overall "
                         f"is {best:.2f})", "try a lower training.min_overall")
    if rule.top_fraction is not None:
        kept = sorted(kept, key=lambda e: (-_overall(e), e.id))[: math.ceil(rule.top_fraction * len(kept))]
    return kept


def select_targets(episodes: Sequence[Episode], rule: EpisodeFilter) -> list[Target]:
    """The turns that did not fail, of the kept episodes, narrowed by role and character."""
    kept = select_episodes(episodes, rule)
    targets = _nonempty([Target(e, i) for e in kept for i, t in enumerate(e.turns) if not t.failed],
                        "the kept episodes have no turn that did not fail", "use other runs or filters")
    if rule.roles:
        present = sorted({t.role for t in targets})
        targets = _nonempty([t for t in targets if t.role in rule.roles],
                            f"training.roles={list(rule.roles)} left no turns (roles in the kept episodes: "
                            f"{', '.join(present)})", "choose one of those roles")
    if rule.character is not None:
        present = sorted({t.character for t in targets})
        targets = _nonempty([t for t in targets if t.character == rule.character],
                            f"training.character={rule.character} has no kept turns (characters: "
                            f"{_names(present)})", "choose one of those persona ids or loosen the filters")
    return targets


def _overall(episode: Episode) -> float:
    return episode.scores.overall if episode.scores else math.nan


def _nonempty(items: list[Any], problem: str, advice: str) -> list[Any]:
    if not items:
        raise UsageError(f"the dataset is empty: {problem}; {advice}")
    return items


def _names(names: Sequence[str]) -> str:
    return listing(names, limit=12, empty="none")


# ---------------------------------------------------------------- character splits


@dataclass(frozen=True)
class CharacterSplit:
    """Disjoint sets of persona ids: training characters and held-out (eval) characters."""

    train: frozenset[str]
    eval: frozenset[str]

    def __post_init__(self) -> None:
        if self.train & self.eval:
            raise ValueError(f"characters in both splits: {sorted(self.train & self.eval)}")

    def side(self, characters: Iterable[str]) -> str | None:
        """"eval" if any of the characters is held out, "train" if all train, else None."""
        involved = set(characters)
        if involved & self.eval:
            return "eval"
        return "train" if involved <= self.train else None


def split_names(data: RunData, rule: EpisodeFilter | None = None) -> list[str]:
    """The characters to split: everyone; for one character's data (``rule.character``) its
    partners, so that its conversations with held-out partners become the eval split."""
    names = data.characters()
    return [n for n in names if n != rule.character] if rule and rule.character else names


def target_side(split: CharacterSplit, rule: EpisodeFilter, targets: Sequence[Target]) -> str | None:
    """The split of examples built from ``targets``: by speaker, or by partner for one character."""
    if rule.character is None:
        return split.side([t.character for t in targets])
    return split.side([character_id(t.episode, t.partner) for t in targets])


def split_characters(names: Iterable[str], eval_fraction: float, rng: np.random.Generator,
                     held_out: Sequence[str] = ()) -> CharacterSplit:
    """Hold out ``held_out`` or, without it, a random ``eval_fraction`` of the characters (>= 1)."""
    pool = sorted(set(names))
    require(0.0 <= eval_fraction < 1.0, "training.eval_fraction", "a number in [0, 1)", eval_fraction)
    unknown = sorted(set(held_out) - set(pool))
    if unknown:
        raise UsageError(f"training.held_out names unknown characters {unknown}; characters: {_names(pool)}")
    if held_out:
        chosen = set(held_out)
    else:
        count = max(round(eval_fraction * len(pool)), 1 if eval_fraction > 0 and len(pool) > 1 else 0)
        chosen = {pool[int(i)] for i in rng.choice(len(pool), size=count, replace=False)}
    if not chosen:
        raise UsageError(f"the dataset has no held-out characters: training.eval_fraction={eval_fraction} of "
                         f"{len(pool)} character(s); raise training.eval_fraction or set training.held_out")
    if len(chosen) == len(pool):
        raise UsageError(f"every character is held out ({len(pool)}); none is left to train on")
    return CharacterSplit(frozenset(pool) - chosen, frozenset(chosen))


# ---------------------------------------------------------------- builders


@dataclass(frozen=True)
class BuiltDataset:
    """A built dataset (splits "train" and "eval") and its card (sources, filters, counts, drops)."""

    dataset: DatasetDict
    card: dict[str, Any]


def reply_context(data: RunData, target: Target) -> tuple[ReplyContext, int]:
    """What the speaker saw before ``target``'s turn, and how many of its memories are gone."""
    episode, turn = target.episode, target.turn
    history = tuple((t.speaker, t.text) for t in episode.turns[: target.index] if not t.failed)
    memories = data.run_of(episode).memories
    texts = tuple(memories[m].text for m in turn.memory_ids if m in memories)
    context = ReplyContext(data.persona(episode, turn.speaker), target.partner, target.role, history, texts,
                           episode.scene, turn.goal)
    return context, len(turn.memory_ids) - len(texts)


def build_chat_dataset(data: RunData, rule: EpisodeFilter, prompts: PromptBuilder,
                       split: CharacterSplit) -> BuiltDataset:
    """One example per kept target turn: the prompt as the speaker saw it, then its reply."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    dropped: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for target in select_targets(data.episodes, rule):
        side = target_side(split, rule, [target])
        if side is None:
            dropped["character in neither split"] += 1
            continue
        context, missing = reply_context(data, target)
        warnings["prompts rebuilt without memories deleted since (forgetting)"] += bool(missing)
        messages = [*to_chat(prompts.reply_messages(context)),
                    {"role": "assistant", "content": target.turn.text}]
        rows[side].append({"messages": messages, "episode_id": target.episode.id, "name": target.speaker,
                           "character": target.character, "role": target.role, "overall": target.overall,
                           "turn": target.index})
    notes = ("Each example is a turn's prompt rebuilt with the prompt templates (persona, partner, role, "
             "scene, recalled memories, history window) followed by the reply as the assistant message.")
    return built_dataset("chat", data, rows, CHAT_FEATURES, split, dropped, rule, notes, warnings,
                  extra={"split_by": "partner" if rule.character else "speaker", **_prompt_settings(prompts)})


def _prompt_settings(prompts: PromptBuilder) -> dict[str, Any]:
    return {"prompts_dir": str(prompts.directory), "history_window": prompts.history_window}


def build_preference_dataset(data: RunData, rule: EpisodeFilter, prompts: PromptBuilder,
                             split: CharacterSplit, min_margin: float = 0.5,
                             same_round: bool = True) -> BuiltDataset:
    """DPO pairs: the same character, role and speaking turn (and round, with ``same_round``) in two
    episodes; chosen = the reply in the better-scored one (which must pass ``rule``'s score filters),
    rejected = the reply in the worse one, prompt = the chosen reply's context."""
    require(min_margin >= 0, "min_margin", "a number >= 0", min_margin)
    scored = _nonempty([e for e in data.episodes if e.scores], "no episode has scores",
                       "score them first: python run.py task=score input=<episodes.jsonl>")
    allowed = {e.id for e in select_episodes(scored, rule)}
    targets = select_targets(scored, replace(rule, min_overall=None, top_fraction=None))
    groups = _preference_groups(targets, same_round)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    dropped: Counter[str] = Counter()
    for group in groups.values():
        for chosen, rejected in _pairs(group, allowed, min_margin):
            side = target_side(split, rule, [chosen, rejected])
            if side is None:
                dropped["character in neither split"] += 1
                continue
            context, _ = reply_context(data, chosen)
            rows[side].append(_preference_row(prompts, context, chosen, rejected))
    if not rows["train"] and not rows["eval"]:
        raise UsageError(f"the dataset is empty: no preference pairs (two scored episodes of one character, "
                         f"role and speaking turn{' in the same round' if same_round else ''} whose overall "
                         f"differs by >= {min_margin}); add runs (same seed, other models), lower min_margin"
                         f"{' or set same_round=false' if same_round else ''}")
    within = " within one round (runs of one seed share pairings and scenes)" if same_round else ""
    notes = (f"Pairs match character, role and the speaker's n-th turn{within}; the rejected reply was "
             "said in its own episode, whose context can differ from the prompt shown.")
    return built_dataset("preference", data, rows, PREFERENCE_FEATURES, split, dropped, rule, notes,
                  extra={"min_margin": min_margin, "same_round": same_round, **_prompt_settings(prompts),
                         "split_by": "partner" if rule.character else "speaker"})


def _preference_groups(targets: Sequence[Target], same_round: bool) -> dict[tuple, list[Target]]:
    groups: dict[tuple, list[Target]] = defaultdict(list)
    for target in targets:
        nth = sum(1 for t in target.episode.turns[: target.index] if t.speaker == target.speaker)
        key = (target.character, target.role, nth, target.episode.round if same_round else None)
        groups[key].append(target)
    return groups


def _pairs(group: Sequence[Target], allowed: set[str], margin: float) -> list[tuple[Target, Target]]:
    """Best with worst, second best with second worst, ... while the score gap is >= ``margin``."""
    ranked = sorted((t for t in group if t.overall is not None),
                    key=lambda t: (-(t.overall or 0.0), t.episode.id))
    pairs = []
    for chosen, rejected in zip(ranked[: len(ranked) // 2], reversed(ranked), strict=False):
        if chosen.episode.id in allowed and (chosen.overall or 0) - (rejected.overall or 0) >= margin:
            pairs.append((chosen, rejected))
    return pairs


def _preference_row(prompts: PromptBuilder, context: ReplyContext, chosen: Target,
                    rejected: Target) -> dict[str, Any]:
    return {"prompt": to_chat(prompts.reply_messages(context)),
            "chosen": [{"role": "assistant", "content": chosen.turn.text}],
            "rejected": [{"role": "assistant", "content": rejected.turn.text}],
            "episode_id": chosen.episode.id, "rejected_episode_id": rejected.episode.id,
            "character": chosen.character, "role": chosen.role,
            "chosen_overall": chosen.overall, "rejected_overall": rejected.overall}


def build_compatibility_dataset(data: RunData, split: CharacterSplit) -> BuiltDataset:
    """(persona A, persona B) -> the episode's overall score; the seeker is A when there is one."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    dropped: Counter[str] = Counter()
    for episode in data.episodes:
        row = _compatibility_row(data, episode) if episode.scores else None
        side = split.side([row["a"], row["b"]]) if row else None
        if row is None or side is None:
            dropped["character in neither split" if row else "episode without scores"] += 1
            continue
        if side == "eval" and not {row["a"], row["b"]} <= split.eval:
            dropped["mixed train/eval pair: kept in eval only"] += 1
        rows[side].append(row)
    notes = ("score: the critic's overall score (1-5) of the pair's episode; a pair goes to eval if "
             "either character is held out.")
    return built_dataset("compatibility", data, rows, COMPATIBILITY_FEATURES, split, dropped, notes=notes)


def _compatibility_row(data: RunData, episode: Episode) -> dict[str, Any]:
    seeker = episode.role_of("seeker")
    a, b = (seeker, _other(episode, seeker)) if seeker else episode.participants
    persona_a, persona_b = data.persona(episode, a).describe(), data.persona(episode, b).describe()
    return {"persona_a": persona_a, "persona_b": persona_b,
            "score": _overall(episode), "a": character_id(episode, a), "b": character_id(episode, b),
            "a_role": episode.roles[a], "b_role": episode.roles[b], "episode_id": episode.id}


def _other(episode: Episode, name: str) -> str:
    return next(n for n in episode.participants if n != name)


def built_dataset(kind: str, data: RunData, rows: dict[str, list[dict[str, Any]]], features: Features,
           split: CharacterSplit, dropped: Counter[str], rule: EpisodeFilter | None = None,
           notes: str = "", warnings: Counter[str] | None = None,
           extra: dict[str, Any] | None = None) -> BuiltDataset:
    for name, problem in (("train", "the training characters"), ("eval", "the held-out characters")):
        if not rows[name]:
            chars = split.train if name == "train" else split.eval
            raise UsageError(f"the dataset is empty: the {name} split has no {kind} examples ({problem}: "
                             f"{_names(sorted(chars))}); hold out other characters (training.held_out) "
                             "or loosen the filters (e.g. a lower training.min_overall)")
    dataset = DatasetDict({name: Dataset.from_dict({c: [r[c] for r in rows[name]] for c in features},
                                                   features=features) for name in SPLITS})
    card = {"kind": kind, "created": utc_now(), "notes": notes,
            "runs": [{"name": r.name, "path": r.path, "episodes": len(r.episodes)} for r in data.runs],
            "filter": asdict(rule) if rule else None, "settings": extra or {},
            "split": {"train": sorted(split.train), "eval": sorted(split.eval)},
            "dropped": {k: v for k, v in dropped.items() if v},
            "warnings": {k: v for k, v in (warnings or {}).items() if v}}
    return BuiltDataset(dataset, {**card, **describe_dataset(dataset)})


# ---------------------------------------------------------------- saving


def describe_dataset(dataset: DatasetDict) -> dict[str, Any]:
    """Counts, characters present and columns per split, read from the data itself."""
    def characters(part: Dataset) -> list[str]:
        columns = [c for c in ("character", "a", "b") if c in part.column_names]
        return sorted({value for c in columns for value in part[c]})

    parts = list(dataset.values())
    return {"counts": {name: part.num_rows for name, part in dataset.items()},
            "characters": {name: characters(part) for name, part in dataset.items()},
            "columns": list(parts[0].column_names) if parts else []}


def save_dataset(dataset: DatasetDict, folder: Path, card: dict[str, Any]) -> Path:
    """``save_to_disk`` plus card.json and README.md, written atomically (temp folder, rename)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"dataset folder {folder} already exists and is not empty; choose a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    full = {"created": utc_now(), **card, **describe_dataset(dataset)}
    with staging_folder(folder) as temp:
        dataset.save_to_disk(str(temp))
        write_card(temp, full, render_dataset_readme(full))
        if not publish_folder(temp, folder):
            raise UsageError(f"dataset folder {folder} was written by another process meanwhile")
    return folder


def load_saved_dataset(folder: Path) -> tuple[DatasetDict, dict[str, Any]]:
    """A dataset written by `save_dataset`, with its card."""
    card = read_card(Path(folder))
    return load_from_disk(str(folder)), card

