"""Screenshots of the leaderboard site's four page types (index, table, record, item browser) into docs/img/.

    .venv/bin/python scripts/site_screenshots.py [--site docs/leaderboard] [--out docs/img] [--table SLUG]
        [--items ITEM_PAGE] [--pages index,table,record,items]

Needs Debian's chromium and chromium-driver and the dev extra (selenium). The item page is the first one the site
has unless --items names one (a site built from a cache; see `vismech leaderboard --cache`)."""
from __future__ import annotations

import re
import sys
from argparse import ArgumentParser
from pathlib import Path

from vismech.errors import VismechError
from vismech.site.browser import chromium, page_url


def pages(folder: Path, table: str | None, items: str | None) -> dict[str, Path]:
    tables = sorted((folder / "tables").glob("*.html"))
    chosen = folder / "tables" / f"{table}.html" if table else (tables[0] if tables else None)
    if chosen is None or not chosen.is_file():
        raise VismechError(f"site '{folder}' has no table page {table or ''}; build it with `vismech leaderboard`")
    item_pages = [folder / "items" / items] if items else sorted((folder / "items").glob("*--s1-p0.html"))
    found = {"index": folder / "index.html", "table": chosen}
    if item_pages and item_pages[0].is_file():
        record = item_pages[0].name.rsplit("--s", 1)[0]
        found["record"] = folder / "records" / f"{record}.html"
        found["items"] = item_pages[0]
    else:  # the table's best row
        first = re.search(r'href="\.\./(records/[^"]+\.html)"', chosen.read_text()).group(1)
        found["record"] = folder / first
    return found


def main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="docs/leaderboard")
    parser.add_argument("--out", default="docs/img")
    parser.add_argument("--table", default=None, help="the table page's slug, e.g. mini-bias-sd_world")
    parser.add_argument("--items", default=None, help="an item page's file name under items/")
    parser.add_argument("--pages", default="index,table,record,items", help="which page types to shoot")
    opts = parser.parse_args(argv)
    wanted = opts.pages.split(",")
    driver = chromium(width=1400, height=1200)
    try:
        for kind, path in pages(Path(opts.site), opts.table, opts.items).items():
            if kind not in wanted:
                continue
            driver.get(page_url(path))
            out = Path(opts.out) / f"site_{kind}.png"
            driver.save_screenshot(str(out))
            print(f"{out}: {path}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
