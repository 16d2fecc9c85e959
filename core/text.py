"""Sentences: the one splitter replies, profiles, memories and seeker texts are cut with."""

from __future__ import annotations

import re

# A sentence ends at . ! ? or … (closing quotes and brackets stay with it) before whitespace.
_BOUNDARY = re.compile(r"([.!?…])([\"'”’)\]]*)\s+")
_END = re.compile(r"[.!?…][\"'”’)\]]*$")
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "c", "ca", "vol", "no", "gen", "lt", "col",
    "capt", "rev", "prof", "mt", "e.g", "i.e", "etc", "vs", "approx", "fl", "b", "d", "op",
})


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped; a period after an initial ("J. K. Rowling") or a
    common abbreviation ("c. 470 BC", "Dr. Lee") does not end one. An unfinished tail is kept
    as the last item (see ``ends_sentence``)."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        words = text[start:match.start()].split()
        last = words[-1].lower().lstrip("(\"'“‘") if words else ""
        if match.group(1) == "." and (last in ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    return [s for s in (*sentences, tail) if s]


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends like a complete sentence (punctuation, then closing quotes)."""
    return bool(_END.search(text.strip()))
