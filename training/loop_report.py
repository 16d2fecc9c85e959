"""loop_report.md and loop.png: every generation side by side on the held-out characters, by
the critic and by the measures the critic did not train for, and what changed, in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.stats import welch
from environment.markdown import markdown_table
from training.loop_measures import Generation

DIMENSIONS_FIRST = ("overall",)


def _fmt(summary: list[float]) -> str:
    mean, half, n = summary
    if n == 0 or mean != mean:
        return "n/a"
    return f"{mean:.2f} ± {half:.2f} (n={int(n)})" if half == half else f"{mean:.2f} (n={int(n)})"


def _num(value: float | None, digits: int = 3) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "n/a" if missing else f"{value:.{digits}f}"


def _dimensions(generations: Sequence[Generation]) -> list[str]:
    found = sorted({d for g in generations for d in g.held_out_scores})
    return [d for d in DIMENSIONS_FIRST if d in found] + [d for d in found if d not in DIMENSIONS_FIRST]


def _name(g: Generation) -> str:
    return f"gen {g.index} ({g.adapter or 'base'})"


def scores_table(generations: Sequence[Generation]) -> str:
    rows = [(d, *(_fmt(g.summary().get(d, [math.nan, math.nan, 0])) for g in generations))
            for d in _dimensions(generations)]
    return markdown_table(("dimension", *(_name(g) for g in generations)), rows)


def measures_table(generations: Sequence[Generation]) -> str:
    def degeneration(key: str, digits: int = 3) -> Any:
        return lambda g: _num(g.degeneration.get(key), digits)

    def repetition(g: Generation) -> str:
        return str(g.degeneration.get("stop_reasons", {}).get("repetition", 0))

    measures = [("episodes with a near-verbatim repeat", degeneration("repeat_share")),
                ("lines addressing their own speaker", degeneration("self_address_share")),
                ("episodes where a speaker re-introduces itself", degeneration("reintroduction_share")),
                ("mean turns", degeneration("mean_turns", 2)), ("repetition stops", repetition),
                ("distinct-1", degeneration("distinct_1")), ("distinct-2", degeneration("distinct_2")),
                ("Persona-Chat dev perplexity", lambda g: _num(g.perplexity, 2)),
                ("Persona-Chat dev F1", lambda g: _num(g.f1, 4)),
                ("discriminator AUC vs human test (0.5 = human-like)", lambda g: _num(g.discriminator_auc)),
                ("held-out episodes", lambda g: str(g.episodes))]
    rows = [(label, *(value(g) for g in generations)) for label, value in measures]
    return markdown_table(("measure", *(_name(g) for g in generations)), rows)


def process_table(generations: Sequence[Generation]) -> str:
    rows = []
    for g in generations:
        data = "/".join(str(g.dataset.get(k, "-")) for k in ("train", "eval")) if g.dataset else "-"
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in g.seconds.items())
        rows.append((g.index, g.adapter or "base", data, _num(g.train_loss), _num(g.eval_loss),
                     _num(g.train_tokens_per_second, 1), g.trained_adapter or "-", seconds))
    return markdown_table(("generation", "speaks with", "dataset train/eval", "train loss", "eval loss",
                           "train tokens/s", "new adapter", "seconds"), rows)


def test_table(test: dict[str, Any]) -> str:
    if not test:
        return "Not measured yet (the test split is read once, after the last generation)."
    rows = [(label, t["adapter"], _num(t["perplexity"], 2), _num(t["f1"], 4)) for label, t in test.items()]
    return markdown_table(("model", "adapter", "perplexity", "F1"), rows)


def verdict(generations: Sequence[Generation], test: dict[str, Any]) -> list[str]:
    """What changed between generation 0 and the last one, each measure in plain words."""
    done = [g for g in generations if g.held_out_scores]
    if len(done) < 2:
        return ["Only one generation so far."]
    first, last = done[0], done[-1]
    t, p = welch(first.held_out_scores.get("overall", []), last.held_out_scores.get("overall", []))
    a, b = first.summary().get("overall", [math.nan] * 3), last.summary().get("overall", [math.nan] * 3)
    lines = [f"- Critic overall on held-out characters: {a[0]:.2f} -> {b[0]:.2f} (Welch's t {t:.2f}, "
             f"p = {p:.3g}): {'higher' if b[0] > a[0] else 'not higher'}"
             f"{', significant at 0.05' if p < 0.05 else ', not significant at 0.05'}.",
             _change("Near-verbatim repeat share", first.degeneration.get("repeat_share"),
                     last.degeneration.get("repeat_share"), lower_is_better=True),
             _change("Discriminator AUC (0.5 = human-like)", first.discriminator_auc, last.discriminator_auc,
                     lower_is_better=True),
             _change("Persona-Chat dev perplexity", first.perplexity, last.perplexity, lower_is_better=True),
             _change("Persona-Chat dev F1", first.f1, last.f1, lower_is_better=False)]
    if len(test) >= 3:
        base, final = test["base"], list(test.values())[-1]
        lines.append(_change("Persona-Chat test F1 (against the base model)", base["f1"], final["f1"],
                             lower_is_better=False))
    return lines


def _change(label: str, before: float | None, after: float | None, lower_is_better: bool) -> str:
    if before is None or after is None or math.isnan(before) or math.isnan(after):
        return f"- {label}: not measured."
    better = after < before if lower_is_better else after > before
    word = "no change" if after == before else ("better" if better else "worse")
    return f"- {label}: {before:.3f} -> {after:.3f} ({word})."


def write_loop_report(folder: Path, state: dict[str, Any]) -> None:
    generations: list[Generation] = state["generations"]
    lines = ["# Learning loop", "",
             f"Held-out characters (never trained on): {', '.join(state['held_out']) or '-'}",
             f"Warm start: {state.get('warm_start') or 'none'} {state.get('warm_start_info', '')}",
             f"Discriminator: {state.get('discriminator_info', 'not trained yet')}", "",
             "## What changed (generation 0 -> last)", "", *verdict(generations, state.get("test", {})), "",
             "## Critic scores on held-out characters (mean ± 95% CI)", "", scores_table(generations), "",
             "## Measures the critic did not train for (held-out characters)", "",
             measures_table(generations), "",
             "## Persona-Chat test split", "", test_table(state.get("test", {})), "",
             "## Generations", "", process_table(generations), "", "![loop](loop.png)", ""]
    (folder / "loop_report.md").write_text("\n".join(lines))
    draw_loop(folder / "loop.png", generations)


def draw_loop(path: Path, generations: Sequence[Generation]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(figure)
    scores, quality, human = (figure.add_subplot(1, 3, k) for k in (1, 2, 3))
    x = [g.index for g in generations]
    for dimension in _dimensions(generations):
        stats = [g.summary().get(dimension, [math.nan, 0.0, 0]) for g in generations]
        scores.errorbar(x, [s[0] for s in stats], yerr=[s[1] if s[1] == s[1] else 0 for s in stats],
                        marker="o", capsize=3, label=dimension,
                        linewidth=2.5 if dimension == "overall" else 1)
    scores.set(title="Critic on held-out characters", xlabel="generation", ylabel="score (1-5)", xticks=x)
    scores.legend(fontsize=6)
    quality.plot(x, [g.perplexity for g in generations], marker="o", color="tab:red")
    quality.set(title="Persona-Chat dev", xlabel="generation", ylabel="perplexity", xticks=x)
    other = quality.twinx()
    other.plot(x, [g.f1 for g in generations], marker="s", color="tab:blue")
    other.set_ylabel("unigram F1")
    human.plot(x, [g.discriminator_auc for g in generations], marker="o", label="discriminator AUC")
    human.plot(x, [g.degeneration.get("repeat_share", math.nan) for g in generations], marker="s",
               label="near-repeat share")
    human.set(title="Independent measures", xlabel="generation", xticks=x, ylim=(0, 1.05))
    human.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
