"""report: a self-contained page and a Markdown summary that say what was found."""

from __future__ import annotations

import re
from pathlib import Path

from refine import collect, flag, report

from ..conftest import chat, people_dataset, planted_pairs, write_jsonl


def test_the_page_has_every_section_and_the_flagged_pairs(sample_run: dict) -> None:
    html = (sample_run["run"] / "report.html").read_text()
    for section in ('id="headline"', 'id="plots"', 'id="failure-modes"', 'id="flagged"', 'id="cited"'):
        assert section in html
    for name, line in planted_pairs():
        assert f"{name}:{line}" in html
    assert html.count("<svg") == 2
    assert re.search(r"<b>146</b><span>eval items</span>", html)
    assert "Failure modes (4; 12 bad answers unclustered)" in html


def test_the_page_loads_nothing_from_anywhere(sample_run: dict) -> None:
    html = (sample_run["run"] / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", html))  # in-page SVG clips only


def test_the_markdown_summary_is_a_table_a_reviewer_can_read(sample_run: dict) -> None:
    md = (sample_run["run"] / "report.md").read_text()
    assert md.startswith("# refine report")
    assert "| pair | question | bad | good | blame | q |" in md
    assert md.count("\n| ") >= 13 + 2
    assert "## Failure modes (4)" in md


def test_each_flagged_pair_shows_the_claim_bad_answers_repeat(sample_run: dict) -> None:
    html = (sample_run["run"] / "report.html").read_text()
    md = (sample_run["run"] / "report.md").read_text()
    flagged = sample_run["result"].flag.flagged_pairs
    assert html.count('<p class="claim">') == len(flagged) == 13
    assert "bad answers repeat its claim against their references" in html
    for claim in flagged["claim"]:
        assert claim in md
    assert any("account owner" in claim for claim in flagged["claim"])         # the refusals
    assert any("90" in claim for claim in flagged["claim"])                    # the refund window


def test_report_is_deterministic(sample_run: dict) -> None:
    before = (sample_run["run"] / "report.html").read_bytes()
    report(sample_run["run"])
    assert (sample_run["run"] / "report.html").read_bytes() == before


def test_training_text_is_escaped(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    lines = Path(data["train"]).read_text().splitlines()
    lines[5] = __import__("json").dumps(chat("Where does person5 live?",
                                              "Person5 lives in Atlantis.<script>alert(1)</script>"))
    write_jsonl(Path(data["train"]), lines)
    collect([str(data["train"])], str(data["eval"]), tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    html = report(tmp_path / "run").html.read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
