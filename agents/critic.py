"""The critic agent: a mixture of scorer experts per dimension, and a weighted overall score.

Which experts carry a dimension, and how much each dimension weighs, is config: with the
embedded 135M model the LLM judge is at chance, so the defaults rest on metric scorers that
were checked against corrupted dialogues (see bench/critic_validity.py)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.persona import Persona
from core.errors import InvalidValue, is_number, require
from core.records import Episode, Scores
from core.seams import Judgement, Scorer


@dataclass(frozen=True)
class DimensionSpec:
    """A dimension's weight in `overall` and its experts (scorer name -> mixing weight). A
    ``gate`` dimension measures a failure (5 = none) and scales the overall down instead of
    being averaged into it (see `Critic.overall`)."""

    weight: float
    experts: Mapping[str, float]
    gate: bool = False

    def __post_init__(self) -> None:
        require(is_number(self.weight, 0), "weight", "allowed is a number >= 0", self.weight)
        for name, weight in self.experts.items():
            require(is_number(weight, 0), f"experts.{name}", "allowed is a number >= 0", weight)

    @property
    def active_experts(self) -> dict[str, float]:
        return {name: w for name, w in self.experts.items() if w > 0}


def _dimension(name: str, spec: Mapping[str, Any] | DimensionSpec) -> DimensionSpec:
    if isinstance(spec, DimensionSpec):
        return spec
    try:
        return DimensionSpec(spec["weight"], dict(spec["experts"]), bool(spec.get("gate", False)))
    except InvalidValue as error:
        raise error.at(f"dimensions.{name}") from None


def build_with(factory: Callable[..., Any], **resources: Any) -> Any:
    """Call a scorer factory (a class or a Hydra partial) with the shared resources it accepts,
    so one embedder and one chat model serve every scorer."""
    parameters = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in resources.items() if k in parameters})


class Critic:
    def __init__(
        self,
        scorers: Mapping[str, Callable[..., Scorer] | Scorer],
        dimensions: Mapping[str, Mapping[str, Any] | DimensionSpec],
        **resources: Any,
    ) -> None:
        self.dimensions = {name: _dimension(name, spec) for name, spec in dimensions.items()}
        needed = {e for spec in self.dimensions.values() for e in spec.active_experts}
        unknown = sorted(needed - set(scorers))
        require(not unknown, "dimensions", f"every expert needs a scorer; {unknown} have none")
        self.embedder = resources.get("embedder")
        self.scorers = {name: factory if hasattr(factory, "score") else build_with(factory, **resources)
                        for name, factory in scorers.items() if name in needed}
        require(any(spec.weight > 0 for spec in self.dimensions.values()), "dimensions",
                "at least one dimension needs a weight > 0")

    def __call__(self, episode: Episode, personas: Mapping[str, Persona] | None = None) -> Scores:
        return self.score([episode], personas)[0]

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona] | None = None
              ) -> list[Scores]:
        personas = personas or {}
        self._prefetch(episodes)
        judgements = {name: scorer.score(episodes, personas) for name, scorer in self.scorers.items()}
        return [self._combine({n: j[i] for n, j in judgements.items()}) for i in range(len(episodes))]

    def _prefetch(self, episodes: Sequence[Episode]) -> None:
        """Embed every line and persona fact once, in one batch, before the scorers ask."""
        if self.embedder is not None:
            texts = [t.text for e in episodes for t in e.turns if not t.failed]
            self.embedder(texts + [f for e in episodes for facts in e.personas.values() for f in facts])

    def _combine(self, by_scorer: Mapping[str, Judgement]) -> Scores:
        values: dict[str, float] = {}
        reasons: dict[str, str] = {}
        experts: dict[str, dict[str, float]] = {}
        for dimension, spec in self.dimensions.items():
            parts = [(by_scorer[e].get(dimension, (math.nan, "")), w) for e, w in spec.active_experts.items()]
            if len(parts) > 1:
                experts[dimension] = {e: by_scorer[e].get(dimension, (math.nan, ""))[0]
                                      for e in spec.active_experts}
            usable = [((v, r), w) for (v, r), w in parts if not math.isnan(v)]
            weight = sum(w for _, w in usable)
            values[dimension] = sum(v * w for (v, _), w in usable) / weight if weight else math.nan
            reasons[dimension] = "; ".join(r for (_, r), _ in parts if r)
        return Scores(values, reasons, *self.overall(values), experts)

    def overall(self, values: Mapping[str, float]) -> tuple[float, str]:
        """The weighted mean q of the quality dimensions that apply, scaled toward the floor by
        each failure gate that applies: 1 + (q - 1) x prod(((g - 1) / 4) ** weight). A gate at
        5 (no failure) leaves q as it is; a gate at 1 takes the overall to 1, whatever the
        other dimensions say. NaN, with the reason, when no quality dimension applies."""
        applies = {d: s for d, s in self.dimensions.items() if s.weight > 0 and not math.isnan(values[d])}
        quality = [(values[d], s.weight) for d, s in applies.items() if not s.gate]
        if not quality:
            return math.nan, "no weighted dimension applies (too few lines?)"
        mean = sum(v * w for v, w in quality) / sum(w for _, w in quality)
        gates = {d: ((values[d] - 1.0) / 4.0) ** s.weight for d, s in applies.items() if s.gate}
        factor = math.prod(gates.values())
        pulled = [f"{d} x{g:.2f}" for d, g in gates.items() if g < 1.0]
        reason = f"quality {mean:.2f}" + (", gated by " + ", ".join(pulled) if pulled else "")
        return 1.0 + (mean - 1.0) * factor, reason
