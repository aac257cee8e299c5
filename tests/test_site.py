"""The leaderboard site: built from the same tables as leaderboard.md, deterministic, fresh in the repository, and
with an item browser whose thumbnails are exactly the cached images of each item's seed."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from records import record
from vismech import cli, leaderboard, site
from vismech.leaderboard import Board, Listed

REPO = Path(__file__).resolve().parent.parent
FAST = ["model=sd_world", "task=concept", "task.per_class=2", "task.fit.seeds=2", "task.fit.steps=5",
        "task.fit.images=4", "task.sampling.steps=4", "task.judges.reference_count=200"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _board() -> Board:
    return Board([Listed(r) for r in (record("weak", (0.1, 0.2, 0.3, 0.4)), record("tied", (0.2, 0.2, 0.4, 0.5)),
                                      record("strong", (0.9, 1.0, 0.9, 1.0)), record("ctl", (0.0,) * 4, control=True))])


def test_same_records_give_the_same_bytes(tmp_path):
    first = site.write(site.build(_board()), tmp_path / "a")
    second = site.write(site.build(_board()), tmp_path / "b")
    assert _tree(first) == _tree(second)
    assert site.stale(site.build(_board()), first) == []
    [table] = leaderboard.tables(_board())
    svg = _tree(first)[f"img/curves/{table.slug}.svg"].decode()
    assert "<dc:date>" not in svg  # no creation date in the curves


def test_table_page_ranks_and_marks_rows_as_leaderboard_md_does(tmp_path):
    board = _board()
    [table] = leaderboard.tables(board)
    page = site.build(board).files[f"tables/{table.slug}.html"].decode()
    md_rows = [line for line in leaderboard.render(board).splitlines() if re.match(r"\| \d+ \|", line)]
    md_order = [re.search(r"`(\w+)`", line).group(1) for line in md_rows]
    html_order = re.findall(r'<td data-sort="(\w+)"><a href="../records/', page)
    assert html_order == md_order == ["strong", "tied", "weak", "ctl"]
    tied = [line for line in md_rows if "`tied`" in line][0]
    rows = page.split("<tr class=")[1:]
    assert ("≈" in tied) == ('title="tied with the best row"' in rows[1])  # the same tie test decides both
    assert rows[3].startswith('"control') and "unverified" in rows[0]


def test_writing_refuses_a_folder_that_is_not_a_site(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(site.VismechError, match="holds files but no index.html"):
        site.write(site.build(_board()), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_committed_site_is_up_to_date():
    board = leaderboard.collect(REPO / "results")
    folder = REPO / "docs" / "leaderboard"
    built = site.build(board, cache_dir=None, previous=folder, pictures=REPO / "docs" / "img")
    differ = site.stale(built, folder)
    assert differ == [], f"docs/leaderboard is stale ({differ[:3]}...): run `vismech leaderboard`"


def test_leaderboard_check_covers_the_site(tmp_path, capsys):
    from vismech.results import write_record

    write_record(record("a"), tmp_path / "results")
    args = ["--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb.md")]
    assert cli.main(["leaderboard", *args]) == 0
    assert (tmp_path / "docs" / "leaderboard" / "index.html").is_file()  # beside the --out file by default
    assert cli.main(["leaderboard", "--check", *args]) == 0
    (tmp_path / "docs" / "leaderboard" / "static" / "sort.js").write_text("changed")
    assert cli.main(["leaderboard", "--check", *args]) == 1
    assert "docs/leaderboard/static/sort.js: run `vismech leaderboard`" in capsys.readouterr().err


def test_item_browser_shows_each_seeds_cached_images_with_the_judges_verdict(workspace):
    from PIL import Image

    from vismech.generations import GenerationCache
    from vismech.site.thumbs import _keys, png

    assert workspace.run(*FAST, "method=cad_erase", "task.strengths=[0.0,0.04]") == 0
    assert workspace.run(*FAST, "method=noop", "task.strengths=[0.0,1.0]") == 0
    cache_dir = workspace.root / "cache"
    board = leaderboard.collect(workspace.results)
    built = site.build(board, cache_dir=cache_dir, items=6)
    cache = GenerationCache(cache_dir)
    by_method = {row.record.method.name: row for t in leaderboard.tables(board) for row in t.rows}

    cad = by_method["cad_erase"]
    ids, prompts, edited, unedited = _keys(cad.record, cache_dir, 6)
    assert ids == [0, 3, 6, 10, 13, 16]  # spread over the 20 items (10 classes x 2 seeds)
    slug = site.record_slug(cad.path)
    page = built.files[f"items/{slug}--s1-p0.html"].decode()
    shown = re.findall(r'<img src="../(img/thumbs/\w+\.png)" alt="(unedited|edited), item (\d+)"', page)
    assert [int(i) for _, kind, i in shown if kind == "edited"] == ids
    for name, kind, item in shown:
        key = (edited[0.04] if kind == "edited" else unedited)[ids.index(int(item))]
        image = cache.get(key)
        assert built.files[name] == png(image)  # the thumbnail is that seed's cached image, at its own size
        assert Image.open(io.BytesIO(built.files[name])).size == (image.shape[2], image.shape[1])
    assert edited[0.0] == unedited  # the identity strength shows the unedited images
    noop = _keys(by_method["noop"].record, cache_dir, 6)
    assert noop[2][1.0] == noop[3]  # the no-op never edits
    # the judge's verdict on the target's items is the record's own per-item accuracy
    point = next(p for p in cad.record.sweep if p.strength == 0.04)
    accuracy = dict(zip(point.metrics["target_accuracy"].item_ids, point.metrics["target_accuracy"].item_values))
    for item, value in accuracy.items():
        if item in ids:
            verdict = "the prompt&#39;s class" if value == 1.0 else "another class"
            assert re.search(rf"item {item}: .*?judge: {verdict}", page, re.S)

    # without the cache, the thumbnails of the site it replaces serve; without either, no browser
    folder = site.write(built, workspace.root / "site")
    again = site.build(board, cache_dir=None, previous=folder, items=6)
    assert site.stale(again, folder) == []
    bare = site.build(board, cache_dir=None, items=6)
    assert not any(n.startswith(("items/", "img/thumbs/")) for n in bare.files)
    [concept] = [t for t in leaderboard.tables(board) if t.task == "concept"]
    assert "No item browser" in bare.files[f"tables/{concept.slug}.html"].decode()
