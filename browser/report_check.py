"""Opens the report of a `ballot torture` run (and of a `ballot sim` run) in headless Chromium
through WebDriver and checks that its plots were drawn, not only that the page loaded: every
operation of the history has a marker with a non-empty box inside the latency plot, each fault
a shaded band, the throughput lines have length; at 1280x800 and in a narrow window the plots
fit the page. Saves screenshots beside the reports.

Usage: report_check.py RUN_DIR... (each holding report.html and history.jsonl)
"""
import json
import sys
from pathlib import Path

from chromium import browser


def completions(history: Path) -> int:
    """Operations the report must draw: every invocation (completed or cut off)."""
    return sum(1 for line in history.read_text().splitlines() if json.loads(line)["type"] == "invoke")


def check(driver, run: Path) -> list:
    problems = []
    page = run / "report.html"
    expected = completions(run / "history.jsonl")
    for width, height, name in ((1280, 800, "wide"), (600, 900, "narrow")):
        driver.set_window_size(width, height)
        driver.get(page.resolve().as_uri())
        drawn = driver.execute_script(
            """
            const plot = document.querySelector('#latency');
            const box = plot.getBoundingClientRect();
            const inside = (b) => b.width > 0 && b.height > 0 && b.left >= box.left - 4 && b.right <= box.right + 4
                && b.top >= box.top - 4 && b.bottom <= box.bottom + 4;
            const markers = [...plot.querySelectorAll('g.op')];
            const bands = [...document.querySelectorAll('#latency rect.fault')];
            const lines = [...document.querySelectorAll('#throughput polyline')];
            return {
              page: document.documentElement.scrollWidth,
              plot: [box.width, box.height],
              markers: markers.length,
              markersDrawn: markers.filter((m) => inside(m.getBoundingClientRect())).length,
              bands: bands.length,
              bandsDrawn: bands.filter((b) => b.getBoundingClientRect().height > 50).length,
              lineLength: lines.reduce((sum, l) => sum + l.getTotalLength(), 0),
              verdict: document.querySelector('.verdict').textContent,
            };
            """
        )
        where = f"{run.name} at {width}x{height}"
        if drawn["markers"] != expected or drawn["markersDrawn"] != expected:
            problems.append(f"{where}: {expected} operations, {drawn['markers']} markers, {drawn['markersDrawn']} drawn in the plot")
        if drawn["bands"] == 0 or drawn["bandsDrawn"] != drawn["bands"]:
            problems.append(f"{where}: fault bands {drawn['bands']}, drawn {drawn['bandsDrawn']}")
        if drawn["lineLength"] <= 0:
            problems.append(f"{where}: the throughput lines have no length")
        if drawn["plot"][0] < 0.8 * min(width, 1100) - 40 or drawn["page"] > width:
            problems.append(f"{where}: the plot is {drawn['plot']} in a page {drawn['page']} wide")
        driver.save_screenshot(str(run / f"report-{name}.png"))
        print(f"ok   {where}: {drawn['markers']} markers, {drawn['bands']} fault bands; {drawn['verdict']}")
    return problems


def main():
    driver = browser()
    try:
        problems = [p for run in sys.argv[1:] for p in check(driver, Path(run))]
    finally:
        driver.quit()
    for problem in problems:
        print(f"FAIL {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
