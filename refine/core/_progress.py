"""Progress on stderr (rate and ETA) that library code can take or leave.

On a terminal: tqdm bars. Anywhere else (a pipe, a CI log, a file): plain lines, one every
``interval`` seconds and one at the end, with no carriage returns or escape codes, e.g.::

    attribute (embedding): 120/400 items (30%), 12.3 items/s, ETA 0:00:23, failed=0
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import timedelta
from typing import IO, Any, Callable, Iterator

ProgressFn = Callable[[int], None]


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(max(seconds, 0))))


class PlainBar:
    """tqdm's `update`/`set_postfix`/`close` as plain log lines."""

    def __init__(self, description: str, total: int, unit: str, file: IO[str], interval: float,
                 initial: int = 0) -> None:
        self.description, self.total, self.unit, self.file = description, total, unit, file
        self.interval = interval
        self.n = initial
        self._counted_from = initial    # work found done before (a resumed run) is no rate
        self._started = time.monotonic()
        self._last_line = self._started
        self._postfix: dict[str, Any] = {}
        self._closed = False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = self.n - self._counted_from
        rate = done / elapsed
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        text = f"{self.description}: {self.n}/{self.total} {self.unit}s{share}, {rate:.1f} {self.unit}s/s"
        if rate > 0 and self.n < self.total:
            text += f", ETA {_duration((self.total - self.n) / rate)}"
        elif self.n >= self.total:
            text += f", took {_duration(elapsed)}"
        return text + "".join(f", {k}={v}" for k, v in self._postfix.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last_line >= self.interval and self.n < self.total:   # close() says the end
            self._last_line = now
            print(self.line(), file=self.file, flush=True)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self._postfix.update(values)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.total:
                print(self.line(), file=self.file, flush=True)


class Progress:
    """Hands out progress bars; all are closed when the context exits."""

    def __init__(self, enabled: bool = True, *, file: IO[str] | None = None,
                 interval: float = 10.0) -> None:
        self.enabled = enabled
        self.file = file or sys.stderr
        self.interval = interval
        self._bars: list = []

    def bar(self, description: str, total: int, unit: str = "it", initial: int = 0):
        """A bar over `total` units, `initial` of them done before (not counted in the rate)."""
        if self.enabled and not _is_terminal(self.file):
            bar = PlainBar(description, total, unit, self.file, self.interval, initial)
        else:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=description, unit=unit, file=self.file, initial=initial,
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


def _is_terminal(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
