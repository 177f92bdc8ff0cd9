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
