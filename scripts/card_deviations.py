"""Writes each paper card's deviations page in docs/cards/ (the card's name, then "_deviations") from its config
(vismech/deviations.py).

    .venv/bin/python scripts/card_deviations.py          # write the pages
    .venv/bin/python scripts/card_deviations.py --check  # exit 1 naming the cards whose page is out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

from vismech.deviations import stale, write_all

FOLDER = Path(__file__).resolve().parent.parent / "docs" / "cards"

if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        old = stale(FOLDER)
        if old:
            print(f"out of date: {', '.join(old)}; run scripts/card_deviations.py", file=sys.stderr)
        sys.exit(1 if old else 0)
    for path in write_all(FOLDER):
        print(path.relative_to(FOLDER.parent.parent))
