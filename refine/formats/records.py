"""The attribution record: what every backend produces for one eval item.

It mirrors a SeekrFlow ``influential-finetuning-data`` response, so results from the API and
from local backends flow through the same code::

    {"results": [{"id", "influence_level", "file_id", "messages": "Q: ...\\nA: ..."}],
     "answer", "version"}

plus what refine needs on top: the local ``pair_id`` each result maps to, a raw ``score``
(higher = more influential; its scale is the backend's own) and the item's status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LEVELS", "Attribution", "Influence"]

LEVELS = ("high", "medium", "low")


@dataclass(frozen=True)
class Influence:
    """One influential training pair for one eval item."""

    pair_id: str | None          # the local pair; None when a remote result matched no local line
    influence_level: str         # "high" | "medium" | "low"
    score: float | None
    file_id: str | None
    messages: str                # "Q: ...\nA: ..."
    source_id: str | None = None  # the result id the backend gave, when it has its own

    def __post_init__(self) -> None:
        if self.influence_level not in LEVELS:
            raise ValueError(f"influence_level must be one of {LEVELS}, got {self.influence_level!r}")


@dataclass
class Attribution:
    """The influential pairs of one eval item, most influential first."""

    eval_id: str
    influences: list[Influence] = field(default_factory=list)
    answer: str | None = None
    version: str | None = None
    status: str = "done"         # "done" | "failed"
    error: str | None = None

    def to_seekrflow(self) -> dict[str, Any]:
        """This record as a SeekrFlow API response body."""
        return {
            "results": [{"id": inf.source_id or inf.pair_id, "influence_level": inf.influence_level,
                         "file_id": inf.file_id, "messages": inf.messages}
                        for inf in self.influences],
            "answer": self.answer,
            "version": self.version,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["influences"] = [asdict(inf) for inf in self.influences]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Attribution":
        influences = [Influence(**inf) for inf in data.get("influences", [])]
        return cls(eval_id=data["eval_id"], influences=influences, answer=data.get("answer"),
                   version=data.get("version"), status=data.get("status", "done"),
                   error=data.get("error"))
