"""The generated leaderboard: ranking, ties, separation of tracks and fingerprints, and freshness of leaderboard.md."""
from __future__ import annotations

from pathlib import Path

import pytest
from records import record

from vismech import cli, leaderboard
from vismech.errors import VismechError
from vismech.results import write_record

REPO = Path(__file__).resolve().parents[1]


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| rank")]


def test_rank_follows_direction_and_ties_are_marked():
    strong = record("strong", (0.9, 0.8, 0.9, 0.8))
    tied = record("tied", (0.9, 0.8, 0.9, 0.79))
    weak = record("weak", (0.1, 0.0, 0.2, 0.1), control=True)
    rows = _rows(leaderboard.render([weak, tied, strong]))
    assert [r.split("|")[2].split()[0] for r in rows] == ["`strong`", "`tied`", "`weak`"]
    assert "**0.8500" in rows[0]
    assert rows[1].split("|")[4].strip().endswith("≈")  # rank | method | strength | primary
    assert "≈" not in rows[2] and "(control)" in rows[2]
    lower = [record("a", (0.1,) * 4, direction="lower"), record("b", (0.5,) * 4, direction="lower")]
    assert "`a`" in _rows(leaderboard.render(lower))[0]


def test_tracks_and_fingerprints_never_share_a_table():
    text = leaderboard.render([record("a"), record("b", track="paper"), record("c", fingerprint="fp-b"),
                               record("d", subject="other")])
    assert text.count("\n## ") == 4
    assert "## mini · t · s\n" in text and "## mini · t · s (protocol variant 2)" in text
    assert "## paper · t · s" in text and "## mini · t · other" in text
    for section in text.split("\n## ")[1:]:
        assert len(_rows(section)) == 1


def test_reported_numbers_are_marked():
    text = leaderboard.render([record("paper_number", kind="reported")])
    assert "(reported, not reproduced)" in text


def test_duplicate_runs_are_refused(tmp_path):
    write_record(record("a"), tmp_path / "one")
    write_record(record("a"), tmp_path / "two")
    with pytest.raises(VismechError, match="are the same run; keep one"):
        leaderboard.collect(tmp_path)


def test_leaderboard_command_and_check(tmp_path, capsys):
    write_record(record("a"), tmp_path / "results")
    out = tmp_path / "lb.md"
    args = ["--results", str(tmp_path / "results"), "--out", str(out)]
    assert cli.main(["leaderboard", "--check", *args]) == 1
    assert cli.main(["leaderboard", *args]) == 0
    assert cli.main(["leaderboard", "--check", *args]) == 0
    assert "## Not admitted" in out.read_text() and "task 't' is not a task of this suite" in out.read_text()


def _real_record():
    from vismech.results import load_record

    [path] = (REPO / "results" / "mini" / "neuron_path" / "vit_world").glob("noop--*seed0.json")
    return load_record(path)


def _with_fingerprint(rec, name, fingerprint):
    sweep = [p.model_copy(update={"metrics": {**p.metrics, name: p.metrics[name].model_copy(
        update={"fingerprint": fingerprint})}}) for p in rec.sweep]
    return rec.model_copy(update={"sweep": sweep})


@pytest.mark.parametrize("change, reason", [
    (lambda r: r, None),
    (lambda r: r.model_copy(update={"method": r.method.model_copy(update={"name": "ghost", "source": "ghost-pkg"})}),
     "method 'ghost' cannot be found (install `ghost-pkg`)"),
    (lambda r: _with_fingerprint(r, "jas", "0" * 16), "metric 'jas' has fingerprint 0000000000000000; the suite computes"),
    (lambda r: r.model_copy(update={"benchmark_version": "0"}), "made with neuron_path benchmark version 0"),
    (lambda r: r.model_copy(update={"task": "bias_v0"}), "task 'bias_v0' is not a task of this suite"),
])
def test_admission_lists_only_records_the_suite_can_stand_behind(tmp_path, change, reason):
    path = write_record(change(_real_record()), tmp_path)
    board = leaderboard.collect(tmp_path)
    if reason is None:
        assert len(board.listed) == 1 and not board.rejected
        assert board.listed[0].verified == ""
    else:
        assert not board.listed and board.rejected[0][0] == str(path.relative_to(tmp_path))
        assert reason in board.rejected[0][1]
        assert reason in leaderboard.render(board)


def test_committed_leaderboard_is_up_to_date():
    """leaderboard.md and each table's trade-off picture are what the committed records give."""
    files = leaderboard.outputs(leaderboard.collect(REPO / "results"), REPO / "leaderboard.md")
    stale = [str(p.relative_to(REPO)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
    assert stale == [], "stale: run `vismech leaderboard`"
