"""The leaderboard as a static site: the same tables as leaderboard.md, as pages people browse offline.

`build` turns the board's tables (`vismech.leaderboard.tables`) into files in memory: an index, one page per
table (sortable, with every record's trade-off curve), one page per record, and for generative records an item
browser of thumbnails from the generation cache. Every script, style and picture is inside the folder, so the site
works from file:// and from any static host. The same records (and thumbnails) give the same bytes: no dates,
sorted iteration, SVG ids from a fixed salt. `write` replaces the folder; `stale` names the files that differ.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..errors import VismechError
from ..leaderboard import BEST, DISTINCT, TIE, Board, curve_x, method_label, tables
from ..plots import tradeoff_svg
from ..results import ResultRecord
from .thumbs import browse

ITEMS = 40  # items of each generative record shown in the browser, spread over the item set
PAGE = 20  # items on one browser page
STATIC = ("site.css", "sort.js")
# The pictures docs/img holds for the mini track's tables (made by scripts/plot_*.py), shown beside them.
PICTURES = {("neuron_path", "vit_world"): "neuron_paths.png", ("pruning", "vit_world"): "neuron_paths.png",
            ("concept", "sd_world"): "concepts.png", ("bias", "ddpm_world"): "ddpm_world.png",
            ("bias", "sd_world"): "sd_world.png"}


def record_slug(path: str) -> str:
    """A record's page name from its path under the results folder."""
    return path[:-len(".json")].replace("/", "--") if path.endswith(".json") else path.replace("/", "--")


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)  # path inside the site -> bytes

    def put(self, name: str, data: bytes | str) -> None:
        self.files[name] = data.encode() if isinstance(data, str) else data

    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def _env() -> Environment:
    env = Environment(loader=PackageLoader("vismech.site", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = lambda v: f"{v:.4f}"
    env.filters["ci"] = lambda m: "(no interval)" if m.ci_low is None else f"[{m.ci_low:.4f}, {m.ci_high:.4f}]"
    env.filters["strength"] = lambda v: f"{v:g}"
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    env.filters["plain"] = lambda s: s.replace("`", "")
    env.globals.update(BEST=BEST, TIE=TIE, DISTINCT=DISTINCT, method_label=method_label, record_slug=record_slug)
    return env


def _pages(page: int, total: int) -> list[int]:
    return list(range((total + PAGE - 1) // PAGE)) if total else []


def build(board: Board, *, cache_dir: str | Path | None = None, previous: str | Path | None = None,
          pictures: str | Path | None = None, items: int = ITEMS) -> Site:
    """The site's files. `previous`: the site this build replaces (its thumbnails serve records whose images are no
    longer in the cache); `pictures`: the folder of docs/img."""
    env = _env()
    site = Site()
    previous = Path(previous) if previous is not None and Path(previous).is_dir() else None
    found = tables(board)
    static = package_files("vismech.site") / "static"
    for name in STATIC:
        site.put(f"static/{name}", (static / name).read_bytes())
    browsers: dict[str, dict[float, list]] = {}
    shown_pictures: dict[str, str] = {}
    for table in found:
        curve = tradeoff_svg([row.record for row in table.rows], curve_x(table.task))
        site.put(f"img/curves/{table.slug}.svg", curve)
        picture = PICTURES.get((table.task, table.subject)) if table.track == "mini" else None
        if picture and pictures is not None and (Path(pictures) / picture).is_file():
            site.put(f"img/docs/{picture}", (Path(pictures) / picture).read_bytes())
            shown_pictures[table.slug] = f"img/docs/{picture}"
        for row in table.rows:
            sheet = browse(row.record, Path(cache_dir) if cache_dir else None, previous, items, site.put)
            if sheet:
                browsers[row.path] = sheet
    site.put("index.html", env.get_template("index.html").render(
        root="", tables=found, rejected=sorted(board.rejected), browsers=browsers))
    for table in found:
        site.put(f"tables/{table.slug}.html", env.get_template("table.html").render(
            root="../", table=table, picture=shown_pictures.get(table.slug), browsers=browsers))
        for row in table.rows:
            slug = record_slug(row.path)
            sheet = browsers.get(row.path)
            site.put(f"img/curves/records/{slug}.svg", tradeoff_svg([row.record], curve_x(table.task)))
            site.put(f"records/{slug}.html", env.get_template("record.html").render(
                root="../", table=table, row=row, r=row.record, sheet=sheet, slug=slug))
            for k, (strength, shots) in enumerate(sorted((sheet or {}).items())):
                for page in _pages(0, len(shots)):
                    site.put(f"items/{slug}--s{k}-p{page}.html", env.get_template("items.html").render(
                        root="../", table=table, row=row, r=row.record, slug=slug, sheet=sheet, point=k,
                        strength=strength, page=page, pages=_pages(0, len(shots)),
                        shots=shots[page * PAGE:(page + 1) * PAGE]))
    return site


def stale(site: Site, out: str | Path) -> list[str]:
    """Files of the folder `out` that differ from the site's: changed, missing or extra, sorted."""
    out = Path(out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} if out.is_dir() else set()
    differ = [n for n in site.files if n not in on_disk or (out / n).read_bytes() != site.files[n]]
    return sorted(differ + [n for n in on_disk if n not in site.files])


def write(site: Site, out: str | Path) -> Path:
    """Replace the folder `out` with the site: built beside it, then swapped in, so a reader never sees half."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VismechError(f"site folder '{out}' is a file; give a folder (--site)")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise VismechError(f"site folder '{out}' holds files but no index.html; refusing to replace a folder that "
                           f"is not a site: give an empty or new folder (--site)")
    fresh, old = out.with_name(out.name + ".new"), out.with_name(out.name + ".old")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for name, data in sorted(site.files.items()):  # plain writes: the folder as a whole is swapped in below
        (fresh / name).parent.mkdir(parents=True, exist_ok=True)
        (fresh / name).write_bytes(data)
    if out.is_dir():
        out.rename(old)
    fresh.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out
