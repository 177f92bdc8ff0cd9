"""The one error tree of refine.

::

    RefineError                  anything refine refuses to do; the CLI exits 2
    ├── InputError               a bad input file: carries file, line and field
    ├── ConfigError              a bad setting or recipe: carries the key (and file/line for recipes)
    ├── RunDirError              a run directory that is missing, incomplete or made with other settings
    │   └── IncompleteRunError   a collection finished with items left failed (exit code 3)
    └── BackendError             an attribution backend could not do its work

Library code raises these and never exits the process; the CLI turns them into a
one-line message and the error's exit code.

Exit codes of the CLI: 0 done; 1 a check of `refine check` failed; 2 refused (bad input,
bad settings, a run directory that cannot be used, a backend that cannot work — a refused
API key included); 3 a collection finished but left eval items failed (run it again to retry
just those).
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "IncompleteRunError", "InputError", "RefineError",
           "RunDirError"]


class RefineError(Exception):
    """Base class of every error refine raises on purpose."""

    exit_code = 2


class InputError(RefineError):
    """An input file is unreadable or a record in it is invalid.

    ``line`` locates a record of a line-oriented file (JSONL); ``row`` (1-based, a header not
    counted) one of a table (CSV, Parquet, a Hugging Face dataset).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, row: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.row = row
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
            if self.row is not None:
                where += f"row {self.row}: "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(RefineError):
    """A setting, option or recipe entry is invalid."""

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None,
                 line: int | None = None) -> None:
        self.message = message
        self.key = key
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        key_part = f"'{key}': " if key else ""
        super().__init__(f"{where}{key_part}{message}")


class RunDirError(RefineError):
    """A run directory cannot be used as asked."""


class IncompleteRunError(RunDirError):
    """A collection finished with eval items left failed; what finished is saved."""

    exit_code = 3


class BackendError(RefineError):
    """An attribution backend failed in a way that stops the run."""
