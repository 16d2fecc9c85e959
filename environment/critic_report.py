"""Report sections on how the conversations went and how sure the critic is: degeneration
measures (near repeats, self-address, turns, the repetition stop), how the critic's experts
agree (Spearman between experts of a dimension, Spearman and Krippendorff's alpha across the
quality dimensions) and the distribution of the scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from agents.degeneration import run_degeneration
from agents.judge import NO_PROBABILITIES
from core.records import Episode
from environment.markdown import markdown_table

GATES = ("copying", "self_address", "recitation", "contradiction")
UNSURE_ALPHA = 0.4  # below it the experts rank episodes too differently to trust one number


def conversations_section(episodes: Sequence[Episode]) -> str:
    rows = [([t.speaker for t in e.turns if not t.failed], [t.text for t in e.turns if not t.failed],
             len(e.turns), e.stop_reason) for e in episodes]
    measured = run_degeneration(rows)
    repetition = measured.stop_reasons.get("repetition", 0)
    table = [("episodes with a line that nearly repeats an earlier one", _share(measured.repeat_share)),
             ("lines that address their own speaker by name", _share(measured.self_address_share)),
             ("episodes where a speaker introduces itself by name again",
              _share(measured.reintroduction_share)),
             ("mean turns per episode", f"{measured.mean_turns:.2f}"),
             ("episodes ended by the repetition stop", f"{repetition} of {measured.episodes}"),
             ("distinct-1 / distinct-2", f"{measured.distinct_1:.3f} / {measured.distinct_2:.3f}")]
    return ("## Conversations\n\nMeasured without a model (agents/degeneration.py): a line nearly repeats "
            "another when their word sets overlap by Jaccard >= 0.6 or they share 6 consecutive words.\n\n"
            + markdown_table(("measure", "value"), table))


def _share(value: float) -> str:
    return f"{100 * value:.1f} %"


def agreement_section(episodes: Sequence[Episode]) -> str:
    scored = [e.scores for e in episodes if e.scores is not None]
    if len(scored) < 3:
        return "## Critic agreement\n\nToo few scored episodes to measure agreement."
    parts = ["## Critic agreement", "", _within_dimensions(scored), "", _across_dimensions(scored)]
    silent = sum(any(NO_PROBABILITIES in r for r in s.reasons.values()) for s in scored)
    if silent:
        parts += ["", f"**Warning:** the LLM judge gave no score on {silent} of {len(scored)} episodes: "
                      "the chat model returned no probabilities for the score tokens (an "
                      "OpenAI-compatible server without logprobs). Its weight went to the other "
                      "experts; use critic=default, or a server that returns logprobs."]
    return "\n".join(parts)


def _within_dimensions(scored: Sequence) -> str:
    """Spearman between the experts that share a dimension (e.g. metric and judge)."""
    rows = []
    dimensions = {d for s in scored for d in s.experts}
    for dimension in sorted(dimensions):
        experts = sorted({x for s in scored for x in s.experts.get(dimension, {})})
        for a, b in combinations(experts, 2):
            pairs = [(s.experts[dimension][a], s.experts[dimension][b]) for s in scored
                     if dimension in s.experts and not math.isnan(s.experts[dimension].get(a, math.nan))
                     and not math.isnan(s.experts[dimension].get(b, math.nan))]
            rows.append((dimension, f"{a} / {b}", _rho(pairs), len(pairs)))
    if not rows:
        return "Each dimension has one expert in this critic, so there is no agreement within a dimension."
    return "Within each dimension (Spearman between its experts):\n\n" + markdown_table(
        ("dimension", "experts", "Spearman", "episodes"), rows)


def _across_dimensions(scored: Sequence) -> str:
    """The quality dimensions as raters of the same episodes: do they rank them alike?"""
    names = [d for d in scored[0].values if d not in GATES
             and sum(not math.isnan(s.values.get(d, math.nan)) for s in scored) >= 3]
    matrix = np.array([[s.values.get(d, math.nan) for s in scored] for d in names], dtype=float)
    rhos = [_rho(list(zip(matrix[i], matrix[j], strict=True))) for i, j in combinations(range(len(names)), 2)]
    rhos = [r for r in rhos if not math.isnan(r)]
    alpha = _alpha(matrix)
    note = (f" Below {UNSURE_ALPHA} the experts rank episodes too differently for one overall number "
            "to mean much: read the dimensions." if alpha < UNSURE_ALPHA else "")
    return (f"Across the quality dimensions ({', '.join(names)}): mean pairwise Spearman "
            f"{np.mean(rhos) if rhos else math.nan:.2f}, Krippendorff's alpha (interval) {alpha:.2f}.{note}")


def _rho(pairs: Sequence[tuple[float, float]]) -> float:
    clean = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    if len(clean) < 3 or len({a for a, _ in clean}) < 2 or len({b for _, b in clean}) < 2:
        return math.nan
    from scipy.stats import spearmanr  # here, not at the top: see core/stats.py

    return round(float(spearmanr(*zip(*clean, strict=True)).statistic), 2)


def _alpha(matrix: np.ndarray) -> float:
    import krippendorff

    if matrix.shape[0] < 2 or np.all(np.isnan(matrix)):
        return math.nan
    try:
        return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval"))
    except ValueError:  # one value only: agreement is undefined
        return math.nan


def distribution_section(episodes: Sequence[Episode]) -> str:
    """Quartiles of each dimension and of overall, and how many episodes each failure gate pulled."""
    scored = [e.scores for e in episodes if e.scores is not None]
    if not scored:
        return "## Score distribution\n\nNo episode was scored."
    rows = []
    for name in [*scored[0].values, "overall"]:
        values = [s.overall if name == "overall" else s.values.get(name, math.nan) for s in scored]
        kept = np.array([v for v in values if not math.isnan(v)])
        if len(kept):
            q = np.percentile(kept, [0, 25, 50, 75, 100])
            below = f"{int((kept < 5).sum())}" if name in GATES else ""
            rows.append((name, *(f"{v:.2f}" for v in q), len(kept), below))
    return "## Score distribution\n\n" + markdown_table(
        ("dimension", "min", "25%", "median", "75%", "max", "n", "episodes failing (gates)"), rows)
