"""How a conversation degenerates, measured without a model: lines that nearly repeat an earlier
line (the partner's, or one's own), lines that open with their own speaker's name, lines that
recite a text instead of using it. The report, the critic, the reranker of candidate replies
and the learning loop's independent measures all use these same definitions."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
JACCARD = 0.6   # word-set overlap at which a line nearly repeats another
RUN = 6         # ... or this many consecutive words shared with it
STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "so", "to", "of", "in", "on", "at", "for", "with", "about",
    "from", "by", "as", "is", "am", "are", "was", "were", "be", "been", "i", "me", "my", "you", "your",
    "we", "our", "it", "its", "this", "that", "do", "does", "did", "have", "has", "had", "not", "no",
    "yes", "oh"))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def longest_shared_run(a: Sequence[str], b: Sequence[str]) -> int:
    """The most consecutive words ``a`` and ``b`` have in common."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def copies(line: str, source: str, jaccard_at: float = JACCARD, run: int = RUN) -> bool:
    """Whether ``line`` nearly repeats ``source``: most of its words, or a long run of them."""
    a, b = words(line), words(source)
    if not a or not b:
        return False
    return jaccard(a, b) >= jaccard_at or longest_shared_run(a, b) >= min(run, len(a))


def copied_from(line: str, earlier: Sequence[str]) -> int | None:
    """The index of the most recent earlier line that ``line`` nearly repeats, else None."""
    return next((i for i in range(len(earlier) - 1, -1, -1) if copies(line, earlier[i])), None)


def opens_with_name(line: str, name: str) -> bool:
    """Whether ``line`` opens with ``name`` (full or first name) as a word, after any quotes or
    brackets: "David Marsh, I'm glad..." said by David Marsh addresses its own speaker."""
    names = [n for n in dict.fromkeys([name.strip(), name.strip().split(" ")[0]]) if n]
    pattern = "|".join(re.escape(n) for n in names)
    return bool(pattern) and bool(re.match(rf"^[\s\"'“‘(\[*]*(?:{pattern})\b", line, flags=re.I))


def addresses(line: str, name: str) -> bool:
    """Whether ``line`` speaks to ``name`` (full or first name) as to a listener: at its opening
    ("Mira, ..."), as a vocative after a comma ("..., Mira." / "..., Mira!"), or by telling the
    listener they are Mira ("You are Mira, from Tampere.", seen in a llama-server run)."""
    if opens_with_name(line, name):
        return True
    names = [n for n in dict.fromkeys([name.strip(), name.strip().split(" ")[0]]) if n]
    pattern = "|".join(re.escape(n) for n in names)
    return bool(pattern) and bool(
        re.search(rf",\s*(?:dear\s+)?(?:{pattern})\s*[,.!?]", line, flags=re.I)
        or re.search(rf"\byou(?:'re|\s+are)\s+(?:{pattern})\b", line, flags=re.I))


def claims_name(line: str, name: str) -> bool:
    """Whether ``line`` introduces its speaker as ``name`` ("I'm Uma", "my name is Uma"): said
    by anyone but Uma, the speaker has lost track of who is who."""
    names = [n for n in dict.fromkeys([name.strip(), name.strip().split(" ")[0]]) if n]
    pattern = "|".join(re.escape(n) for n in names)
    return bool(pattern) and bool(re.search(rf"\b(?:i am|i'm|my name is|call me|this is)\s+(?:{pattern})\b",
                                            line, flags=re.I))


def gives_another_name(line: str, name: str) -> bool:
    """Whether ``line`` gives its speaker a name other than ``name`` ("My name is Aisha, by the
    way!" said by Leila Laurent, read in a default run): the speaker has lost who it is. Only
    the unambiguous forms count ("my name is", "call me"); "I'm Glad" is not a name."""
    own = {n.lower() for n in [name.strip(), *name.strip().split(" ")] if n}
    found = re.findall(r"\b(?i:my name is|my name's|call me)\s+([A-Z][a-z]+(?:[-'][A-Za-z]+)?)", line)
    return any(n.lower() not in own for n in found)


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def recites(line: str, fact: str) -> bool:
    """Whether ``line`` is the fact restated nearly word for word and little else: most of the
    fact's content words, in a long shared run, and hardly any of its own. "i have two dogs."
    as a whole line recites; "i have two dogs, do you have pets?" uses the fact."""
    a, b = content_words(line), content_words(fact)
    if len(b) < 2 or not a:
        return False
    shared = set(a) & set(b)
    covered, own = len(shared) / len(set(b)), len(shared) / len(set(a))
    return covered >= 0.8 and own >= 0.8 and longest_shared_run(words(line), words(fact)) >= min(
        4, len(words(fact)))


@dataclass(frozen=True)
class EpisodeDegeneration:
    """One episode's failures: which lines nearly repeat an earlier one, which address their
    own speaker by name (at the opening or as a vocative), and which introduce their speaker
    again ("I'm Iris..." when Iris has already said who she is: a loop the repeat measure
    misses when the rest of the line is reworded)."""

    lines: int
    repeats: tuple[int, ...]
    self_addressed: tuple[int, ...]
    reintroductions: tuple[int, ...] = ()

    @property
    def has_repeat(self) -> bool:
        return bool(self.repeats)


def degeneration(speakers: Sequence[str], texts: Sequence[str]) -> EpisodeDegeneration:
    """The failures of an episode's lines (``speakers[i]`` said ``texts[i]``)."""
    repeats = tuple(i for i in range(1, len(texts)) if copied_from(texts[i], texts[:i]) is not None)
    named = tuple(i for i, (s, t) in enumerate(zip(speakers, texts, strict=True)) if addresses(t, s))
    return EpisodeDegeneration(len(texts), repeats, named, reintroductions(speakers, texts))


def reintroductions(speakers: Sequence[str], texts: Sequence[str]) -> tuple[int, ...]:
    """Lines in which a speaker introduces itself by name after having done so already."""
    introduced: set[str] = set()
    found = []
    for i, (speaker, text) in enumerate(zip(speakers, texts, strict=True)):
        if claims_name(text, speaker):
            if speaker in introduced:
                found.append(i)
            introduced.add(speaker)
    return tuple(found)


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (distinct-1, distinct-2)."""
    grams = [tuple(w[i: i + n]) for w in (words(t) for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class RunDegeneration:
    """A run's degeneration measures (the learning loop's and the benchmarks' columns)."""

    episodes: int
    repeat_share: float           # episodes with a line that nearly repeats an earlier one
    self_address_share: float     # lines that address their own speaker by name
    reintroduction_share: float   # episodes in which a speaker introduces itself by name twice or more
    mean_turns: float
    stop_reasons: dict[str, int]
    distinct_1: float
    distinct_2: float


def run_degeneration(episodes: Sequence[tuple[Sequence[str], Sequence[str], int, str]]) -> RunDegeneration:
    """From (speakers, texts, turns, stop reason) per episode."""
    measured = [degeneration(s, t) for s, t, _, _ in episodes]
    lines = sum(m.lines for m in measured)
    texts = [t for _, ts, _, _ in episodes for t in ts]
    return RunDegeneration(
        episodes=len(episodes),
        repeat_share=_share(sum(m.has_repeat for m in measured), len(measured)),
        self_address_share=_share(sum(len(m.self_addressed) for m in measured), lines),
        reintroduction_share=_share(sum(bool(m.reintroductions) for m in measured), len(measured)),
        mean_turns=_share(sum(n for _, _, n, _ in episodes), len(episodes)),
        stop_reasons=dict(Counter(r for _, _, _, r in episodes)),
        distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2))


def _share(count: int, total: int) -> float:
    """count / total, 0 for nothing counted."""
    return count / total if total else 0.0
