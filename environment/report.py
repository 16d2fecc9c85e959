"""The Markdown run report: settings, episodes, scores with 95% CIs, tokens, graph, examples."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import networkx as nx

from core.records import Episode, Turn
from core.stats import mean_ci, welch
from environment.budget import Budget, Usage, episode_turns, ledger
from environment.critic_report import agreement_section, conversations_section, distribution_section
from environment.graph import graph_metrics
from environment.markdown import markdown_table

QUOTE_LIMIT = 300


def write_report(path: str | Path, *, title: str, config_summary: dict[str, str],
                 episodes: Sequence[Episode], graph: nx.Graph, wall_seconds: float,
                 prices: Mapping[str, Sequence[float]] | None = None) -> str:
    """Write the run report to ``path`` (a folder means ``<folder>/report.md``); return its text."""
    sections = [
        f"# {title}",
        _settings_section(config_summary),
        _episodes_section(episodes),
        _scores_section(episodes),
        conversations_section(episodes),
        agreement_section(episodes),
        distribution_section(episodes),
        _models_section(episodes),
        _tokens_section(episodes, wall_seconds),
        _ledger_section(episodes, prices or {}),
        _graph_section(graph),
        _examples_section(episodes),
    ]
    text = "\n\n".join(sections) + "\n"
    path = Path(path)
    if path.is_dir():
        path = path / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def _number(value: float, digits: int = 2) -> str:
    if isinstance(value, int):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _models_section(episodes: Sequence[Episode]) -> str:
    """Overall score by the model a participant spoke with (A/B cohorts, per-role adapters).
    A mixed episode counts for both of its models."""
    by_model: dict[str, list[float]] = {}
    for episode in episodes:
        if episode.scores:
            for label in set(episode.models.values()) or {episode.model}:
                if episode.scores.rated:
                    by_model.setdefault(label, []).append(episode.scores.overall)
    if len(by_model) < 2:
        return "## Models\n\nOne model for every character: " + (next(iter(by_model), "n/a"))
    rows = [(label, *(_number(v) for v in mean_ci(values)[:2]), len(values))
            for label, values in sorted(by_model.items())]
    return "## Models\n\nMean overall by the model a participant used (mixed episodes count " \
           "for both).\n\n" + markdown_table(("model", "mean overall", "95% CI ±", "episodes"), rows) \
           + _cohort_test(by_model)


def _cohort_test(by_model: dict[str, list[float]]) -> str:
    """For two models (an A/B cohort run): the difference of their means and Welch's t-test."""
    if len(by_model) != 2:
        return ""
    (first, a), (second, b) = sorted(by_model.items())
    t, p = welch(a, b)
    difference = mean_ci(b)[0] - mean_ci(a)[0]
    verdict = "a real difference" if p < 0.05 else "no clear difference"
    return (f"\n\n{second} minus {first}: {_number(difference)} (Welch's t {_number(t)}, "
            f"p = {_number(p, 3)}): {verdict} at p < 0.05.")


def _settings_section(config_summary: dict[str, str]) -> str:
    if not config_summary:
        return "## Run settings\n\n(none given)"
    return "## Run settings\n\n" + markdown_table(("setting", "value"), config_summary.items())


def _episodes_section(episodes: Sequence[Episode]) -> str:
    turns = [t for e in episodes for t in e.turns]
    failed = sum(t.failed for t in turns)
    scored = sum(e.scores is not None for e in episodes)
    lines = [
        "## Episodes",
        "",
        f"- episodes: {len(episodes)} ({scored} scored)",
        f"- turns: {len(turns)}, failed turns: {failed}",
    ]
    reasons = Counter(e.stop_reason or "(none)" for e in episodes)
    if reasons:
        lines += ["", markdown_table(("stop reason", "episodes"), reasons.most_common())]
    return "\n".join(lines)


def score_dimensions(episodes: Iterable[Episode]) -> list[str]:
    """The critic dimensions found in ``episodes``, in first-seen order."""
    seen: dict[str, None] = {}
    for episode in episodes:
        if episode.scores is not None:
            seen.update(dict.fromkeys(episode.scores.values))
    return list(seen)


def _scores_section(episodes: Sequence[Episode]) -> str:
    scored = [e.scores for e in episodes if e.scores is not None]
    if not scored:
        return "## Scores\n\nNo episode was scored."
    rows = []
    for dimension in score_dimensions(episodes):
        values = [s.values.get(dimension, math.nan) for s in scored]
        rows.append(_score_row(dimension, values))
    rows.append(_score_row("**overall**", [s.overall for s in scored]))
    header = ("dimension", "mean", "95% CI ±", "n")
    return "## Scores\n\nMean with the half-width of a 95% t-interval; NaN scores skipped.\n\n" \
        + markdown_table(header, rows)


def _score_row(name: str, values: list[float]) -> tuple[str, str, str, int]:
    mean, half_width, n = mean_ci(values)
    return name, _number(mean), _number(half_width), n


def _tokens_section(episodes: Sequence[Episode], wall_seconds: float) -> str:
    prompt = sum(e.token_counts[0] for e in episodes)
    completion = sum(e.token_counts[1] for e in episodes)
    rate = completion / wall_seconds if wall_seconds > 0 else math.nan
    rows = [
        ("prompt tokens", prompt),
        ("completion tokens", completion),
        ("total tokens", prompt + completion),
        ("completion tokens/s (wall)", _number(rate)),
        ("wall time", _duration(wall_seconds)),
    ]
    return "## Tokens and time\n\n" + markdown_table(("quantity", "value"), rows)


def _ledger_section(episodes: Sequence[Episode], prices: Mapping[str, Sequence[float]]) -> str:
    """Tokens and cost per model (the conversations' turns; the critic's judge is not counted)."""
    budget = Budget(prices=dict(prices))
    used = ledger(episode_turns(episodes))
    rows = [(model, _counted(u.prompt_tokens, u), _counted(u.completion_tokens, u),
             f"${budget.cost({model: u}):.4f}" if model in prices else "no price given")
            for model, u in used.items()]
    total = Usage(*(sum(getattr(u, f) for u in used.values())
                    for f in ("prompt_tokens", "completion_tokens", "uncounted")))
    rows.append(("all", _counted(total.prompt_tokens, total), _counted(total.completion_tokens, total),
                 f"${budget.cost(used):.4f}" + (" at least" if total.uncounted else "")))
    note = (f"\n\nThe counts are missing for {total.uncounted:,} model calls: the server sent no usage "
            "and no tokenizer was given to count them (`model.tokenizer`).") if total.uncounted else ""
    return "## Ledger\n\n" + markdown_table(("model", "prompt tokens", "completion tokens", "cost"),
                                             rows) + note


def _counted(tokens: int, usage: Usage) -> str:
    """A count, or what is known of it when some calls came without counts (never a bare 0)."""
    return str(tokens) if not usage.uncounted else f"{tokens} + missing for {usage.uncounted} calls"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{seconds:.1f} s ({hours:d}:{minutes:02d}:{rest:04.1f})"


def _graph_section(graph: nx.Graph) -> str:
    metrics = graph_metrics(graph)
    rows = [(name, _number(value, 3)) for name, value in metrics.items()]
    note = ("mean_degree counts episodes per character; mean_partners counts distinct "
            "partners per character.")
    return "## Interaction graph\n\n" + markdown_table(("metric", "value"), rows) + "\n\n" + note


def _examples_section(episodes: Sequence[Episode]) -> str:
    scored = [e for e in episodes if e.scores is not None and e.scores.rated]
    if not scored:
        return "## Best and worst episodes\n\nNo episode was scored."
    best = max(scored, key=lambda e: e.scores.overall)
    worst = min(scored, key=lambda e: e.scores.overall)
    parts = ["## Best and worst episodes", _example("Best", best)]
    if worst is not best:
        parts.append(_example("Worst", worst))
    return "\n\n".join(parts)


def _example(label: str, episode: Episode) -> str:
    header = (f"### {label}: `{episode.id}` (round {episode.round}, overall "
              f"{episode.scores.overall:.2f})\n\n"
              f"Participants: {' and '.join(episode.participants)}")
    quote = "\n>\n".join(_quote_turn(t) for t in episode.turns[:2])
    return header + ("\n\n" + quote if quote else "\n\n(no turns)")


def _quote_turn(turn: Turn) -> str:
    text = f"*(failed turn: {turn.error or 'no reason given'})*" if turn.failed else turn.text
    text = " ".join(text.split())
    if len(text) > QUOTE_LIMIT:
        text = text[:QUOTE_LIMIT].rstrip() + " …"
    return f"> **{turn.speaker}:** {text}"
