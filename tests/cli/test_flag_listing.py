"""`refine flag` lists the flagged pairs in the order of what it prints: q, then bad answers."""

from __future__ import annotations

import re

from click.testing import CliRunner

from refine.cli import main

LINE = re.compile(r"^  (?P<file>\S+):(?P<line>\d+)  (?:repeated by (?P<repeated>\d+) bad|bad=(?P<bad>\d+)).*?"
                  r"  q=(?P<q>\S+)  ")


def test_the_listing_is_sorted_by_the_q_and_the_bad_answers_it_prints(sample_copy: dict) -> None:
    result = CliRunner().invoke(main, ["flag", str(sample_copy["run"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listed = [LINE.match(line) for line in result.output.splitlines()[1:]]
    assert len(listed) == 13 and all(listed), result.output
    keys = [(float("inf") if m["q"] == "–" else float(m["q"]), -int(m["repeated"] or m["bad"]),
             m["file"], int(m["line"])) for m in listed]
    assert keys == sorted(keys)
    assert len({key[0] for key in keys}) >= 3                       # an order, not a tie
    # The same listing twice: the order does not depend on anything but the flags.
    again = CliRunner().invoke(main, ["flag", str(sample_copy["run"])], catch_exceptions=False)
    assert again.output == result.output
