"""The public surface: what `import refine` promises."""

from __future__ import annotations

import subprocess
import sys

import refine


def test_every_exported_name_resolves_to_what_its_module_defines() -> None:
    import importlib

    assert refine.__all__ == sorted(refine.__all__)
    for name in refine.__all__:
        value = getattr(refine, name)
        module = refine._LAZY.get(name)
        if module is not None:   # the lazy name is the very object of the module that defines it
            assert value is getattr(importlib.import_module(f"refine.{module}"), name), name
        elif name != "__version__":
            assert value is getattr(refine.errors, name), name
    assert refine.__version__ == importlib.import_module("refine._version").__version__


def test_every_error_is_a_refine_error() -> None:
    for name in ("InputError", "ConfigError", "RunDirError", "BackendError"):
        assert issubclass(getattr(refine, name), refine.RefineError)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import sys, refine.cli; heavy = {'torch', 'pandas', 'pyarrow', 'sentence_transformers'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
