"""The leaderboard site in a real browser (headless Chromium): the index, a table, a record and an item page load
without console errors, sorting a column reorders the rows, every image loads and every link leads to a file.

Skipped with its reason where Chromium is not installed, except in CI (CI=true), where that is a failure:
scripts/setup.sh installs it there."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from vismech import leaderboard, site
from vismech.site.browser import browser_binaries

REPO = Path(__file__).resolve().parent.parent
# the committed CAD-Erase record; found by name, as its fingerprints change whenever its config does
CONCEPT = min(p.relative_to(REPO).as_posix() for p in (REPO / "results/mini/concept/sd_world").glob("cad_erase--*.json"))

if browser_binaries() is None:
    if os.environ.get("CI") == "true":
        pytest.fail("CI needs chromium and chromium-driver for the site's browser test (scripts/setup.sh dev as "
                    "root installs them)", pytrace=False)
    pytest.skip("chromium and chromium-driver are not installed: `apt-get install chromium chromium-driver`",
                allow_module_level=True)
pytest.importorskip("selenium", reason="selenium comes with the dev extra: scripts/setup.sh dev")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The committed records' site, with one concept record's images put in a fresh cache so it has a browser.
    The images are synthetic (one colour per seed): this test is about the page, not the model."""
    import torch

    from vismech.generations import GenerationCache
    from vismech.results import load_record
    from vismech.site.thumbs import _keys

    root = tmp_path_factory.mktemp("site")
    cache = GenerationCache(root / "cache")
    found = _keys(load_record(REPO / CONCEPT), root / "cache", site.ITEMS)
    assert found is not None, "the sd_world subject of the committed concept record cannot be loaded"
    keys = sorted({k for ks in found[2].values() for k in ks} | set(found[3]))
    for k, key in enumerate(keys):
        cache.put(key, torch.full((3, 32, 32), (k % 7) / 7.0))
    board = leaderboard.collect(REPO / "results")
    return site.write(site.build(board, cache_dir=root / "cache", pictures=REPO / "docs" / "img"), root / "out")


@pytest.fixture(scope="module")
def driver():
    from vismech.site.browser import chromium

    browser = chromium()
    yield browser
    browser.quit()


def _pages(folder: Path) -> list[Path]:
    record = site.record_slug(Path(CONCEPT).relative_to("results").as_posix())
    table = next(p.name for p in sorted((folder / "tables").glob("mini-concept-sd_world-*.html"))
                 if f"{record}.html" in p.read_text())
    return [folder / "index.html", folder / "tables" / table,
            folder / "records" / f"{record}.html", folder / "items" / f"{record}--s1-p0.html"]


def _open(driver, path: Path) -> None:
    from vismech.site.browser import page_url

    driver.get_log("browser")  # drop what earlier pages said
    driver.get(page_url(path))


@pytest.mark.parametrize("page", range(4), ids=["index", "table", "record", "items"])
def test_page_loads_with_its_images_and_links(built, driver, page):
    path = _pages(built)[page]
    assert path.is_file()
    _open(driver, path)
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    assert images or page == 0, f"{path.name} shows no image"
    assert [src for src, ok in images if not ok] == []
    links = driver.execute_script("return Array.from(document.links).map(a => a.href)")
    assert links
    local = [unquote(urlparse(href).path) for href in links if href.startswith("file:")]
    assert local and [p for p in local if not Path(p).is_file()] == []
    assert [href for href in links if not href.startswith("file:")] == []  # nothing leaves the folder
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_sorting_a_column_reorders_the_rows(built, driver):
    from selenium.webdriver.common.by import By

    _open(driver, _pages(built)[1])
    methods = lambda: [td.text for td in driver.find_elements(By.CSS_SELECTOR, "table.board tbody td:nth-child(2)")]
    ranks = lambda: [int(td.text) for td in driver.find_elements(By.CSS_SELECTOR, "table.board tbody td:first-child")]
    before = methods()
    assert ranks() == list(range(1, len(before) + 1))
    header = driver.find_elements(By.CSS_SELECTOR, "table.board thead th")
    header[0].click()
    header[0].click()  # the second click sorts descending
    assert ranks() == list(range(len(before), 0, -1)) and methods() == before[::-1]
    header[1].click()
    names = [m.split()[0] for m in methods()]
    assert names == sorted(names) and methods() != before[::-1]
    header[2].click()  # the primary metric, ascending by its value
    values = [float(td.get_attribute("data-sort")) for td in
              driver.find_elements(By.CSS_SELECTOR, "table.board tbody td:nth-child(3)")]
    assert values == sorted(values)
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
