"""Plots as inline SVG, the same bytes for the same figures (the report and the outcome section)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["pyplot", "svg"]


def pyplot() -> Any:
    """matplotlib's pyplot, drawing off screen, with SVG element ids seeded so that the same run
    gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "refine"
    return plt


def svg(figure: Any) -> str:
    """`figure` as an ``<svg>`` element (no XML prologue, no date), closed afterwards."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]
