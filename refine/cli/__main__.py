"""``python -m refine.cli``: the `refine` command."""

from . import main

main()
