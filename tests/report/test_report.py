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


def _bad_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="bad-data">(.*?)</script>', html, re.S)
    assert found, "no bad-answer data on the page"
    return __import__("json").loads(found.group(1))


def test_every_bad_answer_is_on_the_page_with_its_reference_and_the_pairs_it_cites(sample_run: dict) -> None:
    import pandas as pd

    run = sample_run["run"]
    data = _bad_data((run / "report.html").read_text())
    items = pd.read_parquet(run / "items.parquet").set_index("eval_id")
    bad = items[items["verdict"] == "bad"]
    assert data["total"] == len(data["rows"]) == len(bad) == 48
    cites = pd.read_parquet(run / "attributions.parquet").dropna(subset=["pair_id"]).sort_values(["eval_id", "rank"])
    pairs = pd.read_parquet(run / "pairs.parquet").drop_duplicates("pair_id").set_index("pair_id")
    flagged = set(sample_run["result"].flag.flagged_pairs["pair_id"])
    modes = pd.read_parquet(run / "clusters.parquet").set_index("eval_id")["cluster"]
    for eval_id, question, answer, reference, reason, mode, cited in data["rows"]:
        assert (question, answer, reference) == tuple(bad.loc[eval_id, ["question", "answer", "reference"]])
        assert data["reasons"][reason] == "verdict given in the eval set" and mode == modes[eval_id]
        want = [(Path(pairs.at[p, "file"]).name, int(pairs.at[p, "line"]), level, p in flagged)
                for p, level in zip(*cites.loc[cites["eval_id"] == eval_id, ["pair_id", "influence_level"]].T.values)]
        got = [(data["files"][cited[i]], cited[i + 1], data["levels"][cited[i + 2] % 4], cited[i + 2] >= 4)
               for i in range(0, len(cited), 3)]
        assert got == want, eval_id
    assert [r[0] for r in data["rows"]] == list(bad.index)          # eval-set order
    assert sum(r[5] == -1 for r in data["rows"]) == 12               # the unclustered ones too


def test_the_markdown_lists_every_bad_answer(sample_run: dict) -> None:
    md = (sample_run["run"] / "report.md").read_text()
    section = md.split("## Bad answers (48)", 1)[1].split("\n## ", 1)[0]
    assert "| eval id | failure mode | question | answer | reference | why bad | cited pairs |" in section
    rows = [line for line in section.splitlines() if line.startswith("| ev-")]
    assert len(rows) == 48
    assert any("support_faq.jsonl:6 (high, flagged)" in row for row in rows)


def test_flagged_pairs_link_their_failure_modes_instead_of_repeating_a_theme(sample_run: dict) -> None:
    html = (sample_run["run"] / "report.html").read_text()
    table = html.split('id="flagged-table"', 1)[1].split("</table>", 1)[0]
    assert ">theme<" not in table and table.count('<a href="#mode-') == 13
    assert "Mode 2: “Is there a maximum file size for uploads?”" in html


def test_eval_text_cannot_break_out_of_the_page_data(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    lines = Path(data["eval"]).read_text().splitlines()
    lines = [line.replace("Person5 lives in Atlantis.", "Person5 lives in Atlantis.</script><script>alert(1)</script>")
             for line in lines]
    write_jsonl(Path(data["eval"]), lines)
    collect([str(data["train"])], str(data["eval"]), tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    html = report(tmp_path / "run").html.read_text()
    assert "<script>alert(1)" not in html
    rows = _bad_data(html)["rows"]
    assert any(r[2] == "Person5 lives in Atlantis.</script><script>alert(1)</script>" for r in rows)
