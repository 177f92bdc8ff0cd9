"""The one error tree of refine.

::

    RefineError                  anything refine refuses to do; the CLI exits 2
    ├── InputError               a bad input file: carries file, line and field
    ├── ConfigError              a bad setting or recipe: carries the key (and file/line for recipes)
    ├── RunDirError              a run directory that is missing, incomplete or made with other settings
    └── BackendError             an attribution backend could not do its work

Library code raises these and never exits the process; the CLI turns them into a
one-line message and exit code 2.
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "InputError", "RefineError", "RunDirError"]


class RefineError(Exception):
    """Base class of every error refine raises on purpose."""

    exit_code = 2


class InputError(RefineError):
    """An input file is unreadable or a record in it is invalid."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
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


class BackendError(RefineError):
    """An attribution backend failed in a way that stops the run."""
