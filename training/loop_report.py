"""loop_report.md and loop.png: generations side by side on held-out characters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DIMENSIONS_FIRST = ("overall",)


def _fmt(summary: list[float]) -> str:
    mean, half, n = summary
    if n == 0 or mean != mean:
        return "n/a"
    return f"{mean:.2f} ± {half:.2f} (n={int(n)})" if half == half else f"{mean:.2f} (n={int(n)})"


def _dimensions(generations: Sequence[Any]) -> list[str]:
    found = sorted({d for g in generations for d in g.held_out_scores})
    return [d for d in DIMENSIONS_FIRST if d in found] + [d for d in found if d not in DIMENSIONS_FIRST]


def scores_table(generations: Sequence[Any]) -> list[str]:
    names = [f"gen {g.index} ({g.adapter or 'base'})" for g in generations]
    header = "| dimension | " + " | ".join(names) + " |"
    lines = [header, "|---|" + "---|" * len(generations)]
    for dimension in _dimensions(generations):
        cells = [_fmt(g.summary().get(dimension, [float("nan"), float("nan"), 0])) for g in generations]
        lines.append(f"| {dimension} | " + " | ".join(cells) + " |")
    return lines


def process_table(generations: Sequence[Any]) -> list[str]:
    lines = ["| generation | adapter used | Persona-Chat dev ppl | F1 | episodes (held-out) | dataset "
             "train/eval | train loss | eval loss | new adapter | seconds |", "|---|" * 1 + "---|" * 9]
    for g in generations:
        data = "/".join(str(g.dataset.get(k, "-")) for k in ("train", "eval")) if g.dataset else "-"
        loss = f"{g.train_loss:.3f}" if g.train_loss is not None else "-"
        eloss = f"{g.eval_loss:.3f}" if g.eval_loss is not None else "-"
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in g.seconds.items())
        lines.append(f"| {g.index} | {g.adapter or 'base'} | {g.perplexity:.2f} | {g.f1:.4f} | "
                     f"{g.episodes} | {data} | {loss} | {eloss} | {g.trained_adapter or '-'} | {seconds} |")
    return lines


def verdict(generations: Sequence[Any]) -> str:
    """What happened between the first and the last generation, in plain words."""
    if len(generations) < 2:
        return "Only one generation so far."
    first, last = generations[0].summary().get("overall"), generations[-1].summary().get("overall")
    if not first or not last or first[2] < 2 or last[2] < 2:
        return "Too few held-out episodes to compare."
    change = last[0] - first[0]
    overlap = abs(change) <= first[1] + last[1]
    words = "no clear change (the 95% intervals overlap)" if overlap else \
        ("an improvement" if change > 0 else "a decline")
    ppl = generations[-1].perplexity - generations[0].perplexity
    return (f"Held-out overall critic score went from {first[0]:.2f} to {last[0]:.2f} ({change:+.2f}): "
            f"{words}. Persona-Chat dev perplexity changed by {ppl:+.2f} "
            f"({'better' if ppl < 0 else 'worse'}; lower is better), F1 by "
            f"{generations[-1].f1 - generations[0].f1:+.4f}.")


def write_loop_report(folder: Path, generations: Sequence[Any], held_out: Sequence[str]) -> None:
    lines = ["# Learning loop", "", f"Held-out characters (never trained on): {', '.join(held_out)}", "",
             "## What happened", "", verdict(generations), "",
             "## Critic scores on held-out characters (mean ± 95% CI)", "", *scores_table(generations), "",
             "## Generations", "", *process_table(generations), "", "![loop](loop.png)", ""]
    (folder / "loop_report.md").write_text("\n".join(lines))
    draw_loop(folder / "loop.png", generations)


def draw_loop(path: Path, generations: Sequence[Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    scores, quality = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    x = [g.index for g in generations]
    for dimension in _dimensions(generations):
        stats = [g.summary().get(dimension, [float("nan"), 0.0, 0]) for g in generations]
        scores.errorbar(x, [s[0] for s in stats], yerr=[s[1] if s[1] == s[1] else 0 for s in stats],
                        marker="o", capsize=3, label=dimension,
                        linewidth=2.5 if dimension == "overall" else 1)
    scores.set(title="Critic on held-out characters", xlabel="generation", ylabel="score (1-5)", xticks=x)
    scores.legend(fontsize=7)
    quality.plot(x, [g.perplexity for g in generations], marker="o", color="tab:red")
    quality.set(title="Persona-Chat dev", xlabel="generation", ylabel="perplexity", xticks=x)
    other = quality.twinx()
    other.plot(x, [g.f1 for g in generations], marker="s", color="tab:blue")
    other.set_ylabel("unigram F1")
    figure.tight_layout()
    figure.savefig(path)
