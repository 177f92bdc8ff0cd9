"""The public surface: what `import refine` promises."""

from __future__ import annotations

import subprocess
import sys

import refine


def test_every_exported_name_resolves_and_the_list_is_sorted() -> None:
    assert refine.__all__ == sorted(refine.__all__)
    for name in refine.__all__:
        assert getattr(refine, name) is not None, name


def test_every_error_is_a_refine_error() -> None:
    for name in ("InputError", "ConfigError", "RunDirError", "BackendError"):
        assert issubclass(getattr(refine, name), refine.RefineError)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import sys, refine.cli; heavy = {'torch', 'pandas', 'pyarrow', 'sentence_transformers'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
