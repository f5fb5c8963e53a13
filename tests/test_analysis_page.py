"""report.html: self-contained, escaped, and working in a real browser (headless Chromium).

The browser test drives Debian's ``/usr/bin/chromium`` through Playwright (never ``playwright
install``: nothing is downloaded); it skips when that binary is absent. ``scripts/test.sh``
installs it when it can (root with apt-get).
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest

from editcollapse.stages.analysis.config import AnalysisConfig
from editcollapse.stages.analysis.page import render_html
from editcollapse.stages.analysis.report import NO_DATA, TITLES, Report, Section
from editcollapse.stages.analysis.run import run_analysis
from editcollapse.warehouse import Warehouse
from tests.analysis_warehouse import fill

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# each figure: loaded, its size, and its bottom-right pixel's alpha (matplotlib's figures are opaque, so
# 0 means the picture stops short: a truncated PNG still has a naturalWidth)
FIGURES_JS = """Promise.all(Array.from(document.images).map(async image => {
    await image.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const corner = context.getImageData(image.naturalWidth - 1, image.naturalHeight - 1, 1, 1).data[3];
    return [image.complete, image.naturalWidth, corner];
}))"""
# a model name that would run script and load an image if the page did not escape it
HOSTILE = '<img src="x" onerror="console.error(\'not escaped\')">'
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class _References(HTMLParser):
    """Every src and href of a page, and its elements by tag."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.sources += [value or "" for name, value in attrs if name == "src"]
        self.links += [value or "" for name, value in attrs if name == "href"]


def test_page_embeds_everything_and_escapes_text(tmp_path) -> None:
    (tmp_path / "fig.png").write_bytes(PIXEL)
    (tmp_path / "hard-cases.csv").write_text("stage,model\nhardedit,x\n")
    report = Report(
        warehouse=f"wh{HOSTILE}",
        threshold=1000.0,
        sections=[
            Section("single_edit", [], None, []),
            Section(
                "hard_cases",
                [{"stage": "hardedit", "run": "f", "model": HOSTILE, "cases": 3, "kept": None}],
                tmp_path / "hard-cases.csv",
                [tmp_path / "fig.png"],
            ),
        ],
    )
    page = render_html(report)
    parsed = _References()
    parsed.feed(page)
    assert parsed.sources == [f"data:image/png;base64,{base64.b64encode(PIXEL).decode()}"]
    assert parsed.links == ["#single-edit", "#hard-cases", "hard-cases.csv"]  # no stylesheet, no CDN
    assert parsed.tags.count("img") == 1 and parsed.tags.count("script") == 1 and "link" not in parsed.tags
    assert HOSTILE not in page and "&lt;img src=&#34;x&#34; onerror=" in page
    single, hard = (page.index(f"<h2>{TITLES[name]}</h2>") for name in ("single_edit", "hard_cases"))
    assert single < page.index(NO_DATA) < hard  # the empty section says so, in report.md's order


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium; scripts/test.sh installs it as root)",
)
def test_report_in_headless_chromium(tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    store = Warehouse(tmp_path / "wh")
    fill(store)
    store.write_part(
        "hardedit",
        [{"run_id": "g", "candidate_id": "e0", "reference_model": HOSTILE, "kept": True}],
        model="m1",
        method="rome",
        run_id="g",
        shard="all",
    )
    result = run_analysis(AnalysisConfig(output=str(tmp_path / "out")), store)
    figures = sum(len(paths) for paths in result.figures.values())
    url = Path(result.html).as_uri()
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url, wait_until="load")
            images = page.evaluate(FIGURES_JS)
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
            header = page.inner_text("header")
            model_cells = page.evaluate(
                "Array.from(document.querySelectorAll('#hard-cases tbody tr')).map(r => r.cells[2].textContent)"
            )
            cases = "Array.from(document.querySelectorAll('#single-edit tbody tr')).map(r => r.cells[5].textContent)"
            page.click("#single-edit th:text-is('cases')")
            ascending = page.evaluate(cases)
            page.click("#single-edit th:text-is('cases')")
            descending = page.evaluate(cases)
        finally:
            browser.close()
    assert problems == []
    assert len(images) == figures == 4 and all(done and width > 0 and corner == 255 for done, width, corner in images)
    assert [u for u in requests if not u.startswith("data:")] == [url]  # nothing fetched but the page itself
    assert headings == [TITLES[name] for name in result.tables]  # report.md's order
    assert str(tmp_path / "wh") in header and "s1, s2" in header and " UTC" in header
    assert HOSTILE in model_cells  # shown as text, not run as markup
    assert ascending == ["1", "4"] and descending == ["4", "1"]
