"""The report in a real browser: headless Chromium driven by Playwright.

Skipped, with the reason, only when Playwright or Chromium truly cannot start here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed: {exc}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    manager = sync_playwright().start()
    try:
        instance = manager.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    except Exception as exc:  # the browser's own start-up failure, reported as the skip reason
        manager.stop()
        pytest.skip(f"Chromium could not start: {exc}")
    yield instance
    instance.close()
    manager.stop()


def test_the_report_renders_sorts_and_filters(browser, sample_run: dict, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: errors.append(f"network request: {req.url}")
            if not req.url.startswith(("file:", "data:", "about:")) else None)
    page.goto((sample_run["run"] / "report.html").as_uri())

    for section in ("#headline", "#plots", "#failure-modes", "#flagged", "#cited"):
        assert page.locator(section).is_visible(), section
    assert page.locator("#plots svg").count() == 2
    rows = page.locator("#flagged-table tbody tr")
    assert rows.count() == 13
    assert page.locator(".mode").count() == 4

    def column(table: str, index: int) -> list[float]:
        return [float(v) for v in page.eval_on_selector_all(
            f"#{table} tbody tr", f"rows => rows.filter(r => r.style.display !== 'none')"
                                  f".map(r => r.cells[{index}].getAttribute('data-value') || r.cells[{index}].textContent)")]

    page.click("#flagged-table th:nth-child(4)")          # "bad": ascending
    bad = column("flagged-table", 3)
    assert bad == sorted(bad) and bad != sorted(bad, reverse=True)
    page.click("#flagged-table th:nth-child(4)")          # and descending
    assert column("flagged-table", 3) == sorted(bad, reverse=True)

    page.fill("input[data-table='flagged-table']", "refund")
    visible = page.eval_on_selector_all("#flagged-table tbody tr", "rows => rows.filter(r => r.style.display !== 'none').length")
    assert 0 < visible < 13

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("REFINE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report.png")
    assert errors == []


def test_every_bad_answer_can_be_found_with_its_reference_and_the_pairs_it_cites(browser, sample_run: dict) -> None:
    import pandas as pd

    run = sample_run["run"]
    items = pd.read_parquet(run / "items.parquet").set_index("eval_id")
    cites = pd.read_parquet(run / "attributions.parquet").sort_values(["eval_id", "rank"])
    pairs = pd.read_parquet(run / "pairs.parquet").drop_duplicates("pair_id").set_index("pair_id")
    flagged = set(sample_run["result"].flag.flagged_pairs["pair_id"])
    # A bad answer that cites a flagged pair at high influence, found by words of its question.
    cited = cites[cites["pair_id"].isin(flagged) & (cites["influence_level"] == "high")]
    target = next(e for e in items.index if items.at[e, "verdict"] == "bad" and e in set(cited["eval_id"]))
    pair = cited.loc[cited["eval_id"] == target, "pair_id"].iloc[0]
    where = f"{Path(pairs.at[pair, 'file']).name}:{pairs.at[pair, 'line']} (high, flagged)"

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(run.joinpath("report.html").as_uri())
    rows = page.locator("#bad-table tbody tr")
    assert rows.count() == 25 and page.locator("#bad-status").inner_text() == "1–25 of 48"
    page.click("#bad-next")
    assert rows.count() == 23 and page.locator("#bad-status").inner_text() == "26–48 of 48"

    page.fill("#bad-search", items.at[target, "question"][:40])
    assert rows.count() == 1
    row = rows.first
    assert row.is_visible()
    text = row.inner_text()
    assert items.at[target, "answer"] in text and items.at[target, "reference"] in text
    assert where in text and row.locator(".cites .flag").count() >= 1

    page.fill("#bad-search", "")
    page.click("#mode-0 a.show-mode")                      # a failure mode's "see them all"
    assert page.locator("#bad-mode").input_value() == "0"
    size = int(page.locator("#mode-0 h3").inner_text().split("— ")[1].split(" bad")[0])
    assert rows.count() == min(size, 25) and page.locator("#bad-status").inner_text().endswith(f"of {size} matching")
    assert errors == []
