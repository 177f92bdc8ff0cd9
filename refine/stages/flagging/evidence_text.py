"""What a text says, as far as text evidence needs it: its sentences, numbers, names and words.

A *claim* is one sentence of a training pair's answer. Whether an answer repeats it, or a
reference states it, is decided by meaning (:mod:`refine.stages.flagging.evidence`, with the embedding model)
gated by three cheap lexical facts about the two texts, each one a reason two sentences that
*read* alike do not say the same thing:

* **numbers** — every number the claim states must be stated too ("within 90 days" is not
  "within 14 days"); digits and numbers in words are the same number ("eighty percent" is 80);
* **names** — two sentences that each name something the other does not are about different
  things ("the Aurora Lite weighs 850 g" is not "the Aurora Max weighs 850 g"). Names are the
  words the training data capitalises mid-sentence and almost never writes in lower case
  (:func:`refine.stages.flagging.defects.proper_nouns`); a text without names (lower-case topics) is never
  vetoed by this;
* **polarity** — a sentence that negates ("isn't a 24/7 line") does not state what one that
  affirms says ("the line is open 24/7"), however close the two read;
* **words** — the share of the claim's content words (stop words dropped, crude stems) that
  the other text contains. A short sentence can sit close to a longer one in embedding space
  while missing what matters ("Restart the VPN client." against "Delete the folder ~/.config/vpn
  and restart." scores 0.87 with the shipped model): the destructive words are not there. Only
  the words *beyond the claim's question* count (:mod:`.gather`; all of them for a claim that
  states numbers, which must match as well): "Delete the data folder of the calendar app"
  shares "calendar" and "app" with every step of the calendar app's procedures, and that says
  nothing about whether a reference tells you to delete anything;
* **subject** — two steps of one app's procedures read alike through the app they name
  ("Delete the data folder of the calendar app" and "Clear the cache in the settings of the
  calendar app" are 0.84 apart), so they are compared once more without it
  (:func:`without_subject`: "Delete the data folder of and everything in it" against "Clear the
  cache in the settings of", 0.26), while "Empty the cache from the settings page of" still
  says what "Clear the cache in the settings of" says.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["FLOOR", "LINK_FLOOR", "claim_words", "clauses", "units", "name_conflict", "names_in", "negated", "numbers",
           "sentences", "tokens", "without_subject", "word_recall"]

# A sentence ends at . ! ? (followed by space) or a line break; numbered or bulleted steps start
# new sentences ("1. Open ... 2. Click ..."). Abbreviations split a sentence in two now and then,
# which costs a claim some words, never a number.
_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+|\s(?=\d{1,2}[.)]\s)|(?<=:)\s+(?=\d{1,2}[.)]\s)")
_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
# A hyphenated compound ("on-call", "sign-in") is a word of its own besides its parts: "the
# on-call shift" and "the early shift" are about different things.
_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)+")
_WORD_OR_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)+|[^\W_]+(?:['’][^\W_]+)?")
_POSSESSIVE = re.compile(r"['’]s$")
_DIGITS = re.compile(r"\d+(?:[.,]\d{3})*(?:\.\d+)?")
_MIN_WORDS = 2
#: Scores below this are not kept by collect (flag's thresholds must be at least this).
FLOOR = 0.5
#: Claims at least this similar (and otherwise compatible) are linked by collect.
LINK_FLOOR = 0.5
#: A training question at least this similar to an eval question (and about the same thing)
#: asks the same question: "Ember Lite warranty?" and "How long is the warranty on the Ember
#: Lite?" are 0.89 apart; the same product's battery question, or another product's warranty,
#: falls below or is told apart by its name.
SAME_QUESTION = 0.8
# Sentence negation, not a determiner: "no questions asked" and "without downtime" affirm, but
# a sentence that opens with "No" ("No refunds are given") negates.
_NEGATION = re.compile(r"\b(?:not|never|cannot|unable|no longer)\b|n['’]t\b|^\W*no\s", re.IGNORECASE)

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
         if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)


def sentences(text: str | None) -> list[str]:
    """The sentences of `text` that can carry a claim: at least two words each ("Yes.",
    "Thanks!" and list numbers carry none), list markers dropped, in order."""
    if not isinstance(text, str) or not text:
        return []
    out = []
    for part in _BREAK.split(unicodedata.normalize("NFKC", text)):
        part = _MARKER.sub("", part or "").strip()
        if len(_WORD.findall(part)) >= _MIN_WORDS:
            out.append(part)
    return out


def _digit_number(token: str) -> str:
    token = token.replace(",", "")
    if "." in token:
        token = token.rstrip("0").rstrip(".")
    return token.lstrip("0") or "0"


def _word_numbers(words: list[str]) -> list[str]:
    """Cardinals written in words ("twenty-five", "two hundred", "a thousand") as digits."""
    found: list[str] = []
    total = current = 0
    active = False
    run: list[str] = []
    previous = ""
    for word in words + [""]:
        previous, before = word, previous
        if word in _SCALES and not active and before == "a":
            current = 1            # "a thousand", "a hundred"
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES and (active or word == "hundred" or current):
            scale = _SCALES[word]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
        elif word == "and" and active:
            continue
        else:
            # A lone "one" is mostly not a number ("one of the plans", "the one you need").
            if active and run != ["one"]:
                found.append(str(total + current))
            total = current = 0
            active = False
            run = []
            continue
        active = True
        run.append(word)
    return found


@lru_cache(maxsize=65536)
def numbers(text: str) -> frozenset[str]:
    """The numbers `text` states, as digits: "1,000" and "one thousand" are both "1000";
    "24/7" is 24 and 7; "9:00" is 9 and 0."""
    text = unicodedata.normalize("NFKC", text)
    found = {_digit_number(n) for n in _DIGITS.findall(text)}
    words = [w for w in re.split(r"[^a-z]+", text.lower()) if w]
    if _NUMBER_WORDS.intersection(words):
        found.update(_word_numbers(words))
    return frozenset(found)


def names_in(text: str, names: frozenset[str] | set[str]) -> frozenset[str]:
    """The words of `text` (lower-cased) that are names."""
    if not names:
        return frozenset()
    return frozenset(w for w in (m.lower() for m in _WORD.findall(text)) if w in names)


def name_conflict(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two texts naming `a` and `b` are about different things: each names something
    the other does not."""
    return bool(a - b) and bool(b - a)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - _NUMBER_WORDS


@lru_cache(maxsize=65536)
def claim_words(text: str) -> frozenset[str]:
    """The content words of `text`, stemmed; numbers in words count as their digits."""
    stop = _stop_words()
    # A possessive is its word: "the expense app's cache" has "app".
    text = unicodedata.normalize("NFKC", text)
    words = [_POSSESSIVE.sub("", w.lower()) for w in _WORD.findall(text) + _COMPOUND.findall(text)]
    out = {_stem(w) for w in words if w not in stop and w not in _NUMBER_WORDS and not w.isdigit()}
    return frozenset(out | numbers(text))


def _token(word: str) -> str:
    return _stem(_POSSESSIVE.sub("", word.lower()))


def tokens(text: str) -> frozenset[str]:
    """Every word of `text`, stop words and compounds too, lower-cased and stemmed as
    :func:`claim_words` does."""
    text = unicodedata.normalize("NFKC", text)
    return frozenset(_token(w) for w in _WORD.findall(text) + _COMPOUND.findall(text))


def without_subject(text: str, subject: frozenset[str], asked: frozenset[str]) -> str:
    """`text` without the words that name its subject: each `subject` word (stemmed content
    words), the stop words of its question (`asked`: :func:`tokens`) just before it and the
    words of its question just after it — "the calendar app" in "Delete the data folder of the
    calendar app" when the question asks about "the calendar app". What is left is what the
    sentence says about its subject; `text` itself when nothing is left."""
    stop = _stop_words()
    words = _WORD_OR_COMPOUND.findall(unicodedata.normalize("NFKC", text))   # "on-call" is one word here
    stems = [_token(w) for w in words]
    keep = [True] * len(words)
    for i, stem in enumerate(stems):
        if stem not in subject:
            continue
        keep[i] = False
        before = i - 1
        while before >= 0 and words[before].lower() in stop and stems[before] in asked:
            keep[before] = False
            before -= 1
        after = i + 1
        while after < len(words) and stems[after] in asked:
            keep[after] = False
            after += 1
    kept = [w for w, k in zip(words, keep) if k]
    return " ".join(kept) if kept else text


def word_recall(claim: frozenset[str], other: frozenset[str]) -> float:
    """The share of a claim's content words that another text has (1 when it has none)."""
    if not claim:
        return 1.0
    return len(claim & other) / len(claim)


def negated(text: str) -> bool:
    """Whether a sentence negates (not, never, can't, unable, …)."""
    return bool(_NEGATION.search(text))


_CLAUSE = re.compile(r"\s*(?:[,;:]|\s[-–—]\s)\s*(?:and |then |but |or )?|\s(?:and then|then)\s")


def clauses(text: str | None) -> list[str]:
    """The sentences of `text` and, of those that list several steps or facts in one sentence
    ("Check your connection, clear the cache, sign out and back in, then upload again."), their
    clauses too: a reference that states a claim inside a long sentence still states it."""
    out = []
    for sentence in sentences(text):
        out.append(sentence)
        parts = [p.strip() for p in _CLAUSE.split(sentence) if p and p.strip()]
        if len(parts) > 1:
            out += [p for p in parts if len(_WORD.findall(p)) >= _MIN_WORDS]
    return out


_WORDS_ALT = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_UNIT = re.compile(r"([$€£])?\s*(?:\d+(?:[.,:/]\d+)*|\b(?:" + _WORDS_ALT + r")(?:[- ](?:" + _WORDS_ALT
                   + r"))*\b)\s*(%|[^\W\d_]+)?", re.IGNORECASE)
_SIGNS = {"$": "dollar", "€": "euro", "£": "pound", "%": "percent"}


@lru_cache(maxsize=65536)
def units(text: str) -> frozenset[str]:
    """What the numbers of `text` count: the word after each number ("5 GB" → gb, "90 days" →
    day) or its sign ("$500" → dollar, "80%" → percent), stemmed. Two sentences that give other
    numbers for the same unit contradict each other; "costs 299 dollars" and "weighs 450 grams"
    do not."""
    found = set()
    for sign, word in _UNIT.findall(unicodedata.normalize("NFKC", text)):
        if sign:
            found.add(_SIGNS[sign])
        if word:
            word = word.lower()
            found.add(_SIGNS.get(word, _stem(word)))
    found.discard("")
    return frozenset(found - _NUMBER_WORDS - {"and", "to", "or", "a", "the", "of"})
