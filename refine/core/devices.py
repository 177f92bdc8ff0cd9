"""Which torch device a backend runs on: `auto` picks a GPU when torch sees one.

A device that cannot be had here (``cuda`` with no GPU visible, ``mps`` off a Mac with one) is
a ConfigError at once, before anything is read or written.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str, dtype: str) -> str:
    """The torch device `name` stands for here, or a ConfigError saying why it cannot be had."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name.startswith("cuda") and not cuda:
        raise ConfigError(f"is {name!r}, but no CUDA GPU is visible to torch {torch.__version__} "
                          "(torch.cuda.is_available() is False): use device=cpu or auto",
                          key="backend_options.device")
    if name == "mps" and not mps:
        raise ConfigError("is 'mps', but no Apple GPU is available: use device=cpu or auto",
                          key="backend_options.device")
    if name == "cpu" and dtype == "float16":
        raise ConfigError("float16 needs a GPU; on the CPU use bfloat16 or float32",
                          key="backend_options.dtype")
    return name
