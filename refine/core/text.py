"""Text normalisation shared by pair identity, matching and grading."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata

_WS = re.compile(r"\s+")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’«»–—…"})
_ARTICLES = {"a", "an", "the"}


def normalize(text: str) -> str:
    """Canonical form for identity: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def pair_key(question: str, answer: str) -> str:
    """The stable id of a Q/A pair: a hash of its normalised content.

    Two lines with the same question and answer (up to case and spacing) are the
    same pair; that is also how results from a remote service, which only see
    "Q: ...\\nA: ...", find their way back to lines of the user's files.
    """
    payload = normalize(question) + "\x1f" + normalize(answer)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def tokens(text: str) -> list[str]:
    """SQuAD-style tokens: lower case, punctuation and articles removed."""
    cleaned = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCT)
    return [t for t in cleaned.split() if t not in _ARTICLES]


def qa_text(question: str, answer: str | None) -> str:
    """The "Q: ...\\nA: ..." form SeekrFlow uses for a pair; also what the embedding model reads."""
    if answer is None:
        return f"Q: {question}"
    return f"Q: {question}\nA: {answer}"
