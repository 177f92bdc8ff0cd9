"""Progress bars (tqdm, on stderr: rate and ETA) that library code can take or leave."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

ProgressFn = Callable[[int], None]


class Progress:
    """Hands out progress bars; all are closed when the context exits."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: list = []

    def bar(self, description: str, total: int, unit: str = "it"):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr,
                   disable=not self.enabled, dynamic_ncols=True, smoothing=0.1)
        self._bars.append(bar)
        return bar

    def callback(self, description: str, total: int) -> ProgressFn:
        """A function that advances a new bar by its argument."""
        bar = self.bar(description, total)

        def advance(n: int) -> None:
            if n:
                bar.update(n)
        return advance

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars.clear()

    @contextlib.contextmanager
    def session(self) -> Iterator["Progress"]:
        try:
            yield self
        finally:
            self.close()
