"""What produced a file: the tool's and the key libraries' versions (no clock, no host names,
so that the same inputs give the same bytes)."""

from __future__ import annotations

import platform
from importlib import metadata

from .._version import __version__

_LIBRARIES = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "sentence-transformers",
              "torch", "transformers", "httpx")


def provenance() -> dict[str, object]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"tool": "refine", "version": __version__, "python": platform.python_version(),
            "libraries": versions}
