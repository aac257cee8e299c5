"""Paraphrase prompts: prompts that describe a class without naming it, for attacking a concept erasure.

An erasure that only unlinks the class's name leaves the concept reachable through a description ("an open shoe
with straps" for a sandal). A paraphrase only attacks if the unedited model renders it as the class, so candidates
are measured (`scripts/measure_paraphrases.py`: the unedited model's images of each candidate on a few seeds, judged
top-1) and only those rendered as their class often enough are kept, with the measurement beside them.

- Mini track: `CANDIDATES` are written for the world's garment classes (shape, parts, use). sd_world's text tower
  only learned the world's caption words (class names, colours, patterns, backgrounds), so a description in other
  words reaches it as untrained tokens: most candidates fail the measurement, which is why it exists. Some borrow
  a neighbour's name ("a sneaker with open toes"), which the world knows. `KEPT_FILE` holds the measured list.
- Paper track: a file by path (`read_paraphrases`): CSV with `class` and `prompt` columns, or JSON {class: [prompt,
  ...]} (the measured list's own format is accepted too).

No prompt may contain a word of its own class's name (`check_unnamed`): that would be the plain prompt again.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from ..errors import VismechError
from ..io import read_user_text

KEPT_FILE = Path(__file__).parent / "data" / "paraphrases_sd_world.json"

CANDIDATES: dict[str, tuple[str, ...]] = {
    "t-shirt": ("a short sleeved top", "a cotton top with short sleeves", "a tee", "a collarless top for summer",
                "a plain top with a round neck", "a pullover with short sleeves", "a summer top",
                "a thin top to wear under a coat"),
    "trouser": ("a pair of pants", "long pants with two legs", "jeans", "slacks for the office",
                "legwear with two long legs", "a pair of long legs of cloth", "pants with a waistband",
                "denim pants"),
    "pullover": ("a warm knitted top", "a wool sweater", "a jumper with long sleeves", "a knitted top for winter",
                 "a sweater", "a long sleeved knit", "a coat without buttons", "a thick top for cold days"),
    "dress": ("a gown", "a one piece garment for women", "a frock", "a long skirt with a top", "an evening gown",
              "a summer frock with a skirt", "a t-shirt that reaches the knees", "a garment with a skirt"),
    "coat": ("a warm jacket", "a jacket with buttons", "outerwear for winter", "a long jacket", "a parka",
             "a pullover with buttons and a collar", "a jacket to wear outside in the cold", "a trench"),
    "sandal": ("an open shoe with straps", "a summer shoe with straps", "a flip flop", "open footwear for the beach",
               "a sneaker with open toes", "a shoe with thin straps and no top", "beach footwear", "a strappy shoe"),
    "shirt": ("a blouse", "a button up top with a collar", "a top with buttons and long sleeves",
              "a formal top with a collar", "a collared button down", "a flannel top", "a blouse with buttons",
              "a pullover with a collar and buttons"),
    "sneaker": ("a running shoe", "a trainer", "a sports shoe with laces", "athletic footwear",
                "a low shoe with laces", "a shoe for running", "a tennis shoe", "a canvas shoe"),
    "bag": ("a purse", "a tote", "a satchel", "a backpack", "a leather purse with a handle", "a case to carry things",
            "a clutch purse", "a sack with handles"),
    "ankle boot": ("a short leather shoe up to the shin", "a chelsea", "a high shoe with a heel",
                   "a short high shoe", "a heeled shoe that covers the foot", "a sneaker that reaches above the foot",
                   "footwear with a heel and a zip", "a winter shoe with a block heel"),
}

ARTICLES = {"a", "an", "the"}


def name_words(class_name: str) -> set[str]:
    """The words of a class's name, split at spaces and hyphens ('ankle boot' -> ankle, boot; 't-shirt' -> t,
    shirt)."""
    return {w for w in re.split(r"[\s\-]+", class_name.lower()) if w and w not in ARTICLES}


def check_unnamed(class_name: str, prompt: str) -> None:
    """A paraphrase must not contain a word of its class's name (as a word or inside one, 'overcoat' for coat)."""
    text = prompt.lower()
    found = [w for w in name_words(class_name) if (len(w) > 1 and w in text) or re.search(rf"\b{re.escape(w)}\b", text)]
    if found:
        raise VismechError(f"paraphrase {prompt!r} of class '{class_name}' contains its name's word(s) {found}; "
                           f"a paraphrase describes the class without naming it")


def _checked(table: dict[str, list[str]], source: str) -> dict[str, list[str]]:
    for name, prompts in table.items():
        if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise VismechError(f"paraphrases of '{name}' in {source} must be a list of non-empty prompts")
        for p in prompts:
            check_unnamed(name, p)
    return {name: [p.strip() for p in prompts] for name, prompts in table.items()}


def read_paraphrases(path: str | Path) -> dict[str, list[str]]:
    """{class: [prompt, ...]} from a CSV (`class`, `prompt` columns) or a JSON file ({class: [prompts]}, or the
    measured list's {"kept": {class: [{"prompt": ...}, ...]}})."""
    file, text = read_user_text(path, "paraphrase file", "a CSV with 'class' and 'prompt' columns or a JSON object "
                                                         "{class: [prompts]}")
    if file.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or not {"class", "prompt"} <= set(rows[0]):
            raise VismechError(f"paraphrase file '{file}' needs 'class' and 'prompt' columns; columns: "
                               f"{', '.join(rows[0]) if rows else '(none)'}")
        table: dict[str, list[str]] = {}
        for row in rows:
            if (row["prompt"] or "").strip():
                table.setdefault(row["class"].strip(), []).append(row["prompt"])
        return _checked(table, str(file))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VismechError(f"paraphrase file '{file}' is neither CSV (by its suffix) nor valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("kept"), dict):
        data = {name: [row["prompt"] for row in rows] for name, rows in data["kept"].items()}
    if not isinstance(data, dict):
        raise VismechError(f"paraphrase file '{file}' must hold a JSON object {{class: [prompts]}}")
    return _checked(data, str(file))


def measured() -> dict[str, Any]:
    """The committed measurement of `CANDIDATES` on the unedited sd_world (see scripts/measure_paraphrases.py)."""
    if not KEPT_FILE.is_file():
        raise VismechError(f"the measured paraphrase list '{KEPT_FILE}' is missing; run "
                           f"scripts/measure_paraphrases.py to make it")
    return json.loads(KEPT_FILE.read_text())


def paraphrases_of(class_name: str, path: str | Path | None = None) -> list[str]:
    """The kept paraphrases of a class: from `path` (paper track), else the committed mini-track measurement."""
    table = read_paraphrases(path) if path is not None else read_paraphrases(KEPT_FILE)
    prompts = table.get(class_name, [])
    if not prompts:
        where = f"'{path}'" if path is not None else f"the measured list ({KEPT_FILE.name})"
        raise VismechError(f"no paraphrases of '{class_name}' in {where}; classes there: "
                           f"{', '.join(n for n, p in table.items() if p) or '(none)'}")
    return prompts
