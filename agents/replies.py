"""Model output is untrusted: clean a raw reply strictly or reject it (never invent text)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from agents.degeneration import addresses, claims_name, gives_another_name
from core.records import Reply
from core.text import ends_sentence, split_sentences

_STAGE_DIRECTION = re.compile(r"^\s*[(\[*][^()\[\]*]{0,300}[)\]*]\s*")
_LEAKED_TURN = re.compile(r"\n\s*[A-Z][\w .'-]{0,40}:|<\||\n\s*\n|\b(?:User|Assistant|System):", re.S)
# "see you" and "take care" only as farewells: not "I see you like tea", "I take care of my mum".
_GOODBYE = re.compile(
    r"\b(?:(?:good\s?-?bye|bye(?:-bye)?|farewell|talk (?:to you )?(?:later|soon))\b"
    r"|(?<!to )(?<!i )see you"
    r"(?:\s+(?:soon|later|tomorrow|next|around|then|again|there|on|at)\b|\s*(?:[.!,]|$))"
    r"|take care(?! of (?!yourself))\b)", re.I)
_AI_DISCLAIMER = re.compile(
    r"\bas an? (?:ai|artificial intelligence)\b|\blanguage model\b|\bnot an? ai\b"
    r"|\bas an? (?:[\w-]+ ){0,3}(?:ai )?assistant\b"
    # "I'm just an AI", "I'm more than just a chatbot" (read in a model=llamacpp run, 2026-12-07)
    r"|\b(?:i am|i'm) (?:(?:more than|not|just|only|simply|merely|really|actually) )*"
    r"an? (?:ai|artificial intelligence|chatbot|virtual assistant)\b"
    # a speaker (or its partner) described as an assistant: "I'm Emily, a creative writing assistant"
    r"|\b(?:i am|i'm|you are|you're)(?: [\w,-]+){0,4} (?:ai|writing|virtual|digital) assistant\b", re.I)


def clean_reply(raw: str, speaker: str, partner: str, max_sentences: int = 3) -> Reply:
    """Drop a leaked 'Name:' prefix, cut at a leaked next turn, keep whole sentences: a reply
    with the usable ``text``, or with the reason it was rejected (``error``)."""
    text = _unquote(_own_turn(raw, speaker))
    if speaks_for(text, partner):
        return Reply(error="the reply speaks for the partner")
    if addresses(text, speaker):
        return Reply(error="the reply addresses its own speaker by name")
    if claims_name(text, partner):
        return Reply(error="the reply claims to be the partner")
    if gives_another_name(text, speaker):
        return Reply(error="the reply gives its speaker another name")
    text = whole_sentences(text, max_sentences)
    if not re.search(r"[A-Za-z]{2}", text):
        return Reply(error=f"empty or unreadable reply: {raw[:60]!r}")
    if _AI_DISCLAIMER.search(text):
        return Reply(error="the reply breaks character (mentions being an AI)")
    return Reply(text=text)


def _own_turn(raw: str, speaker: str) -> str:
    """The raw text without a leaked 'Name:' prefix, cut at a leaked next turn, spaces collapsed."""
    names = "|".join(re.escape(n) for n in dict.fromkeys([speaker, speaker.split(" ")[0]]) if n)
    text = re.sub(rf"^\s*(?:{names}|Me|Assistant|[A-Z])\s*:\s*", "", raw.strip(), flags=re.I)
    leak = _LEAKED_TURN.search(text)
    if leak:
        text = text[: leak.start()]
    text = _STAGE_DIRECTION.sub("", text)  # "(Mira smiles) Hi" -> "Hi": not speech
    return re.sub(r"\s+", " ", text).strip()


def speaks_for(text: str, partner: str) -> bool:
    return bool(partner) and bool(re.match(
        rf"(?:{re.escape(partner)}|{re.escape(partner.split(' ')[0])})\s*:", text, flags=re.I))


def settled_sentences(raw: str, speaker: str, partner: str, max_sentences: int = 3) -> str:
    """The part of a reply still being generated that `clean_reply` will keep whatever comes
    next: its complete sentences (a sentence counts once the next one has begun), up to
    ``max_sentences``; '' while the reply could still be rejected or unquoted."""
    text = _own_turn(raw, speaker)
    if text.startswith('"') or speaks_for(text, partner) or _AI_DISCLAIMER.search(text):
        return ""
    parts = split_sentences(text)
    return " ".join(parts[:-1][:max_sentences]).strip()


def _unquote(text: str) -> str:
    """Drop quotes around the whole reply ('"Hi."' or an unclosed '"Hi.'), not quotes inside
    it ('She said "yes."' keeps both)."""
    quotes = text.count('"')
    if quotes == 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].strip()
    if quotes == 1 and (text.startswith('"') or text.endswith('"')):
        return text.strip('"').strip()
    return text


def whole_sentences(text: str, max_sentences: int) -> str:
    """Up to ``max_sentences`` complete sentences; an unfinished tail is dropped if a
    complete sentence precedes it (a capped generation usually stops mid-sentence)."""
    parts = split_sentences(text)
    if len(parts) > 1 and not ends_sentence(parts[-1]):
        parts = parts[:-1]
    return " ".join(parts[:max_sentences]).strip()


def is_goodbye(text: str) -> bool:
    return bool(_GOODBYE.search(text))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def is_repetition(text: str, earlier: Sequence[str], threshold: float = 0.8) -> bool:
    """True if ``text`` repeats an earlier utterance (Jaccard word overlap >= threshold)."""
    words = _words(text)
    if not words:
        return True
    for previous in earlier:
        other = _words(previous)
        if other and len(words & other) / len(words | other) >= threshold:
            return True
    return False
