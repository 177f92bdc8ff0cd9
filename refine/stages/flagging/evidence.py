"""Text evidence: does a bad answer say what a training pair says, where its reference does not?

A person who reads a bad answer, its reference and a pair the answer cites sees the culprit at
once: the pair says what the bad answer said, and the reference does not. This module does the
same, sentence by sentence, for every citation — and beyond citations, since attribution can
miss the culprit.

Two halves, one module each:

* **gathering** (:mod:`refine.stages.flagging.gather`, run by ``collect``): the scores of every
  (item, pair, claim) worth keeping, the claims' texts and the links between claims that say the
  same — the sentences are encoded there, cached, and only scores reach ``flag``;
* **judging** (:mod:`refine.stages.flagging.judge`, run by ``flag``): which items are against and
  for each claim, the claims grouped into defects, each group tested, and the pairs flagged.

The names both halves offer are here too.
"""

from __future__ import annotations

from .evidence_text import FLOOR, LINK_FLOOR
from .gather import EVIDENCE_COLUMNS, Evidence, gather
from .judge import evidence_views, judge

__all__ = ["EVIDENCE_COLUMNS", "FLOOR", "LINK_FLOOR", "Evidence", "evidence_views", "gather", "judge"]
