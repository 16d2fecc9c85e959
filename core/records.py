"""Value records every layer passes around (frozen, validated): a reply as it travels from the
chat model to the episode (Reply), Turn, Scene, Scores, Episode, and memories (MemoryRecord,
Recalled)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ROLES = ("seeker", "supporter", "peer", "interviewer", "interviewee", "user", "character")
SCALE = (1.0, 5.0)  # the critic's scale
_SLACK = 1e-6  # a weighted mean of values on the scale may overshoot it by a rounding error


def _on_scale(value: float) -> bool:
    return SCALE[0] - _SLACK <= value <= SCALE[1] + _SLACK


@dataclass(frozen=True)
class MemoryRecord:
    """A memory to store for ``owner`` (a character id) at simulation time ``created``."""

    owner: str
    text: str
    kind: str
    importance: float
    created: float
    episode_id: str = ""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("a memory needs text")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError("importance must be within [0, 1]")


@dataclass(frozen=True)
class RecallCount:
    """How often the stored episodes recalled a memory, and the simulation time of the last."""

    count: int
    last: float


@dataclass(frozen=True)
class Recalled:
    """A memory returned by a search, with the parts of its score."""

    id: str
    text: str
    kind: str
    score: float
    similarity: float
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Candidate:
    """One of several sampled replies to the same prompt, with the turn scorer's score."""

    text: str
    score: float


@dataclass(frozen=True)
class Reply:
    """One reply, from the chat model's raw text to the cleaned line of a turn: the backend
    fills ``text`` and the token counts; cleaning keeps whole sentences or sets ``error`` (never
    made-up text); retries add their tokens; the turn adds what was recalled and its goal."""

    text: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recalled: tuple[Recalled, ...] = ()
    goal: str = ""
    candidates: tuple[Candidate, ...] = ()  # the usable candidates of a best-of-n turn, best first
    uncounted: int = 0  # model calls whose tokens nobody counted (a server sent no usage, no tokenizer)

    @property
    def ok(self) -> bool:
        return bool(self.text) and not self.error

    def after(self, earlier: Reply) -> Reply:
        """This attempt, with the tokens the earlier attempts spent added to it."""
        return replace(self, prompt_tokens=self.prompt_tokens + earlier.prompt_tokens,
                       completion_tokens=self.completion_tokens + earlier.completion_tokens,
                       uncounted=self.uncounted + earlier.uncounted)


@dataclass(frozen=True)
class Turn:
    """One utterance. ``failed`` turns carry an empty text and the reason in ``error``."""

    speaker: str
    text: str
    memory_ids: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: bool = False
    error: str = ""
    goal: str = ""
    memories: tuple[str, ...] = ()  # the texts of the recalled memories (what the reply must not recite)
    candidates: tuple[Candidate, ...] = ()  # best-of-n: every usable candidate, best (the text) first
    model: str = ""  # the model (and adapter) that spoke the turn, e.g. "SmolLM2-135M-Instruct+loop-g2"
    uncounted: int = 0  # model calls of this turn whose tokens are not in the counts (no usage)

    def __post_init__(self) -> None:
        if not self.speaker:
            raise ValueError("Turn.speaker must not be empty")
        if self.failed == bool(self.text):
            raise ValueError("a Turn has text exactly when it did not fail")
        if self.prompt_tokens < 0 or self.completion_tokens < 0:
            raise ValueError("token counts must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory_ids"] = list(self.memory_ids)
        data["memories"] = list(self.memories)
        data["candidates"] = [asdict(c) for c in self.candidates]
        return data

    @classmethod
    def of(cls, speaker: str, reply: Reply, model: str = "") -> Turn:
        """The turn ``speaker`` took with ``reply`` (a failed turn if the reply has an error),
        spoken by ``model``."""
        failed = not reply.ok
        return cls(speaker=speaker, text="" if failed else reply.text,
                   memory_ids=tuple(m.id for m in reply.recalled), prompt_tokens=reply.prompt_tokens,
                   completion_tokens=reply.completion_tokens, failed=failed,
                   error=(reply.error or "empty reply") if failed else "", goal=reply.goal,
                   memories=tuple(m.text for m in reply.recalled), candidates=reply.candidates, model=model,
                   uncounted=reply.uncounted)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(**{**data, "memory_ids": tuple(data.get("memory_ids", ())),
                      "memories": tuple(data.get("memories", ())),
                      "candidates": tuple(Candidate(**c) for c in data.get("candidates", ()))})


@dataclass(frozen=True)
class Scene:
    """Where and in what situation a conversation happens (Character-LLM's scene)."""

    location: str
    status: str


@dataclass(frozen=True)
class Scores:
    """Critic scores: dimension -> value (1-5, NaN when not applicable) with a short reason;
    ``overall`` is NaN (and ``overall_reason`` says why) when no weighted dimension applies."""

    values: dict[str, float]
    reasons: dict[str, str]
    overall: float
    overall_reason: str = ""
    # dimension -> expert -> value, for dimensions carried by more than one expert (agreement)
    experts: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.values) != set(self.reasons):
            raise ValueError("every score needs a reason")
        if math.isnan(self.overall) and not self.overall_reason:
            raise ValueError("an overall of NaN needs a reason")
        if not (math.isnan(self.overall) or _on_scale(self.overall)):
            raise ValueError(f"overall={self.overall} is off the scale {SCALE}")
        for name, value in self.values.items():
            if not (math.isnan(value) or _on_scale(value)):
                raise ValueError(f"score {name}={value} is off the scale {SCALE} (NaN if not applicable)")

    @property
    def rated(self) -> bool:
        """Whether there is an overall score (False when no weighted dimension applied)."""
        return not math.isnan(self.overall)

    def to_dict(self) -> dict[str, Any]:
        values = {k: (None if math.isnan(v) else round(v, 4)) for k, v in self.values.items()}
        return {**values, "overall": round(self.overall, 4) if self.rated else None}

    def all_reasons(self) -> dict[str, str]:
        """The reasons, with the overall's when it has one."""
        return {**self.reasons, **({"overall": self.overall_reason} if self.overall_reason else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any], reasons: dict[str, str] | None = None,
                  experts: dict[str, dict[str, float | None]] | None = None) -> Scores:
        values = {k: (math.nan if v is None else float(v)) for k, v in data.items() if k != "overall"}
        reasons = reasons or {}
        overall = math.nan if data.get("overall") is None else float(data["overall"])
        by_expert = {d: {x: math.nan if v is None else float(v) for x, v in e.items()}
                     for d, e in (experts or {}).items()}
        return cls(values, {k: reasons.get(k, "") for k in values}, overall,
                   reasons.get("overall", "" if overall == overall else "not rated"), by_expert)


@dataclass(frozen=True)
class Episode:
    """A finished dyadic conversation. ``participants`` are names, unique within a society."""

    id: str
    round: int
    participants: tuple[str, str]
    personas: dict[str, tuple[str, ...]]
    roles: dict[str, str]
    turns: tuple[Turn, ...]
    model: str
    character_ids: dict[str, str] = field(default_factory=dict)
    scene: Scene | None = None
    stop_reason: str = ""
    scores: Scores | None = None
    models: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Episode.id must not be empty")
        if self.round < 0:
            raise ValueError(f"episode {self.id}: round must be >= 0")
        if len(self.participants) != 2 or self.participants[0] == self.participants[1]:
            raise ValueError(f"episode {self.id}: needs two different participants")
        if set(self.roles) != set(self.participants):
            raise ValueError(f"episode {self.id}: roles must name both participants")
        for role in self.roles.values():
            if role not in ROLES:
                raise ValueError(f"episode {self.id}: unknown role {role!r}; allowed: {ROLES}")
        for turn in self.turns:
            if turn.speaker not in self.participants:
                raise ValueError(f"episode {self.id}: speaker {turn.speaker!r} is no participant")

    def with_scores(self, scores: Scores) -> Episode:
        return replace(self, scores=scores)

    def utterances(self, speaker: str) -> list[str]:
        return [t.text for t in self.turns if t.speaker == speaker and not t.failed]

    def role_of(self, role: str) -> str | None:
        return next((name for name, r in self.roles.items() if r == role), None)

    @property
    def token_counts(self) -> tuple[int, int]:
        return (sum(t.prompt_tokens for t in self.turns), sum(t.completion_tokens for t in self.turns))

    def to_dict(self) -> dict[str, Any]:
        """The export format: one self-contained JSON object per episode."""
        return {
            "id": self.id,
            "round": self.round,
            "participants": list(self.participants),
            "character_ids": self.character_ids,
            "personas": {k: list(v) for k, v in self.personas.items()},
            "roles": self.roles,
            "scene": asdict(self.scene) if self.scene else None,
            "turns": [t.to_dict() for t in self.turns],
            "stop_reason": self.stop_reason,
            "scores": self.scores.to_dict() if self.scores else None,
            "score_reasons": self.scores.all_reasons() if self.scores else None,
            **({"expert_scores": _nan_as_none(self.scores.experts)}
               if self.scores and self.scores.experts else {}),
            "model": self.model,
            "models": self.models,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        scores = data.get("scores")
        scene = data.get("scene")
        return cls(
            id=str(data["id"]),
            round=int(data.get("round", 0)),
            participants=tuple(data["participants"]),
            personas={k: tuple(v) for k, v in data.get("personas", {}).items()},
            roles=dict(data["roles"]),
            turns=tuple(Turn.from_dict(t) for t in data["turns"]),
            model=str(data.get("model", "")),
            character_ids=dict(data.get("character_ids", {})),
            scene=Scene(**scene) if scene else None,
            stop_reason=str(data.get("stop_reason", "")),
            scores=Scores.from_dict(scores, data.get("score_reasons"), data.get("expert_scores"))
            if scores else None,
            models=dict(data.get("models", {})),
            meta=dict(data.get("meta", {})),
        )


def _nan_as_none(experts: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {d: {x: None if math.isnan(v) else round(v, 4) for x, v in e.items()} for d, e in experts.items()}
