"""What the parts of `refine serve`'s SeekrFlow store share: its two errors and its clock."""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import RefineError

__all__ = ["NotFound", "Refused", "utc_now"]


class NotFound(RefineError):
    """No such file, project, job or model (the routes answer 404)."""


class Refused(RefineError):
    """A request the store will not carry out (the routes answer 400 with the message)."""


def utc_now() -> str:
    """The time now, as the service writes it (ISO 8601, UTC)."""
    return datetime.now(timezone.utc).isoformat()
