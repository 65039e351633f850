"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, on the pages
served by uvicorn — both flows, a bad upload, and a screenshot of each page.

Playwright's own browser download is not used (and not possible offline): the tests launch
/usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it) and skip when it is
missing. Screenshots go to the test's temporary folder, or to $BEYONDVIS_SCREENSHOTS when set:
`BEYONDVIS_SCREENSHOTS=docs/img pytest tests/web` refreshes the ones the README shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _webdata import COLLECTION

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs pip playwright (dev extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(240_000)  # a card on a busy 2-core machine
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BEYONDVIS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_cook_page_end_to_end(page, live_server, tmp_path):
    from beyondvis.recipes.generation.bundle import DEMO_PHOTO

    page.goto(f"{live_server}/cook")
    # a bad upload first: a text file named like a photo
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is not a photo")
    page.set_input_files("#photo", str(bad))
    page.wait_for_selector("#message.error")
    assert "not a photo" in page.inner_text("#message")
    assert page.is_hidden("#card")
    # then the real photo: ingredients with confidence, title, numbered steps, real recipes
    page.set_input_files("#photo", str(DEMO_PHOTO))
    page.wait_for_selector("#card:not(.hidden)")
    assert page.inner_text("#title").strip()
    assert page.locator("#ingredients li").count() >= 1
    assert "%" in page.inner_text("#ingredients")
    assert page.locator("#steps li").count() >= 1
    assert page.locator("#retrieved details").count() >= 1
    assert "greedy" in page.inner_text("#card-meta")
    page.screenshot(path=str(_shots(tmp_path) / "web-cook.png"), full_page=True)
    # re-generate with sampling
    page.click("#resample")
    page.wait_for_function("document.getElementById('card-meta').textContent.includes('sample')")
    assert page.locator("#steps li").count() >= 1


def test_search_page_end_to_end(page, live_server, tmp_path):
    page.goto(f"{live_server}/search")
    page.wait_for_selector("#collection .cell")
    assert page.locator("#collection .cell").count() == min(COLLECTION, 12)
    page.click("#collection .cell[data-id='0']")
    page.wait_for_function("document.getElementById('query-meta').textContent.includes('×')")
    # draw a box with the mouse over the dish
    c = page.locator("#query-canvas").bounding_box()
    page.mouse.move(c["x"] + c["width"] * 0.15, c["y"] + c["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(c["x"] + c["width"] * 0.5, c["y"] + c["height"] * 0.5, steps=5)
    page.mouse.move(c["x"] + c["width"] * 0.7, c["y"] + c["height"] * 0.7, steps=5)
    page.mouse.up()
    assert page.inner_text("#query-meta").startswith("box ")
    page.click("#search")
    page.wait_for_selector("#results .result")
    assert "matching photo" in page.inner_text("#results-head")
    first = page.locator("#results .result").count()
    assert 1 <= first <= 12
    # the hit canvases carry the drawn localisation box (green pixels)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#results canvas')].some(c => {
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             for (let i = 0; i < d.length; i += 4)
               if (d[i] === 34 && d[i + 1] === 197 && d[i + 2] === 94) return true;
             return false; })"""
    )
    page.screenshot(path=str(_shots(tmp_path) / "web-search.png"), full_page=True)


def test_search_paging_and_a_bad_query_upload(page, live_server, tmp_path):
    page.goto(f"{live_server}/search?per_page=4")
    page.wait_for_selector("#collection .cell")
    page.click("#collection .cell[data-id='1']")
    page.wait_for_function("!document.getElementById('search').disabled")
    page.click("#search")
    page.wait_for_selector("#results .result")
    total = int(page.inner_text("#results-head").split()[0])
    assert total > 4, "the colour fields share words with the dish: several pages"
    assert page.locator("#results .result").count() == 4
    page.click("#next")
    page.wait_for_function("document.getElementById('page-info').textContent.startsWith('page 2')")
    assert page.locator("#results .result b").first.inner_text() == "#5"
    page.click("#prev")
    page.wait_for_function("document.getElementById('page-info').textContent.startsWith('page 1')")
    # an upload that is not an image: a message, not a crash
    bad = tmp_path / "query.png"
    bad.write_bytes(b"%PDF-1.4 not an image")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#message.error")
    assert "not a photo" in page.inner_text("#message")
