"""Progress off a terminal: whole lines with done/total, rate and ETA at most every interval, brief under CI, a
live bar only at a terminal; the trainer's loops report the same way."""
from __future__ import annotations

import io
import sys
import time

import pytest

from vismech.errors import VismechError
from vismech.progress import ProgressLines, line_interval, progress_bar, progress_enabled, trainer_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def log(monkeypatch):
    """Outside CI, with a clock the test moves (tqdm reads `tqdm.std.time`); `log()` makes stderr a log file (in
    the test's body: pytest swaps sys.stderr between a fixture's setup and the test)."""
    now = [0.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("VISMECH_PROGRESS_INTERVAL", raising=False)

    def to_file() -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return to_file, now


def _ten_images_three_seconds_each(now) -> None:
    with progress_bar(total=10, desc="fit", unit="img") as bar:
        for _ in range(10):
            now[0] += 3.0
            bar.update(1)


def test_lines_at_most_every_ten_seconds_with_rate_and_eta(log):
    to_file, now = log
    stream = to_file()
    assert not progress_enabled() and line_interval() == 10.0
    _ten_images_three_seconds_each(now)
    # a line at the first update 10 s after the last one (t = 12 s and 24 s), none at 100% (the last line says
    # it), then the closing line; 4 of 10 in 12 s is 3 s per image, 6 left: ETA 18 s
    assert stream.getvalue().splitlines() == [
        "fit: 4/10 img (40%), 3 s/img, elapsed 00:12, ETA 00:18",
        "fit: 8/10 img (80%), 3 s/img, elapsed 00:24, ETA 00:06",
        "fit: 10/10 img in 00:30 (3 s/img)",
    ]
    assert "\r" not in stream.getvalue()


def test_ci_keeps_it_brief(log, monkeypatch):
    to_file, now = log
    stream = to_file()
    monkeypatch.setenv("CI", "true")
    assert line_interval() == 60.0
    _ten_images_three_seconds_each(now)
    assert stream.getvalue().splitlines() == ["fit: 10/10 img in 00:30 (3 s/img)"]


def test_a_loop_left_early_says_where_it_stopped(log):
    to_file, now = log
    stream = to_file()
    with pytest.raises(RuntimeError), progress_bar(total=4, desc="test", unit="batch") as bar:
        now[0] += 2.0
        bar.update(1)
        raise RuntimeError("boom")
    assert stream.getvalue().splitlines() == ["test: stopped at 1/4 batch after 00:02 (2 s/batch)"]


def test_a_long_step_without_updates_still_shows_the_run_is_alive(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("VISMECH_PROGRESS_INTERVAL", "0.05")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress_bar(total=5, desc="fit", unit="img")
    assert isinstance(bar, ProgressLines)
    deadline = time.monotonic() + 30
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    bar.close()
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("fit: 0/5 img (0%), ? img/s, elapsed ") and first.endswith("ETA ?")


def test_bad_interval_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("VISMECH_PROGRESS_INTERVAL", "soon")
    with pytest.raises(VismechError, match="VISMECH_PROGRESS_INTERVAL must be a number of seconds >= 0, got 'soon'"):
        line_interval()


def test_a_live_bar_only_for_a_person_at_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress_enabled()
    with progress_bar(total=3, desc="fit", unit="img") as bar:
        assert not isinstance(bar, ProgressLines)
        bar.update(1)
        bar.refresh()
        shown = terminal.getvalue().split("\r")[-1]
    assert shown.startswith("fit:") and "1/3" in shown and "img/s]" in shown and "<00:" in shown  # done, rate, ETA
    assert trainer_progress()["enable_progress_bar"] is True
    for value in ("true", "1", "TRUE"):
        monkeypatch.setenv("CI", value)
        assert not progress_enabled()
        assert isinstance(progress_bar(total=3), ProgressLines)
        assert trainer_progress()["enable_progress_bar"] is False
    assert progress_bar(total=3, enabled=False).disable


def test_trainer_loops_report_in_lines_off_a_terminal(monkeypatch):
    import lightning as L
    import torch

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("VISMECH_PROGRESS_INTERVAL", "0")  # a line at every batch
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)

    class Idle(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def test_step(self, batch, batch_idx):
            return None

    loader = torch.utils.data.DataLoader(torch.zeros(6, 1), batch_size=2)
    shown = trainer_progress()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, **shown)
    trainer.test(Idle(), dataloaders=loader, verbose=False)
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("test:")]
    assert [line.split(",")[0] for line in lines[:-1]] == ["test: 1/3 batch (33%)", "test: 2/3 batch (67%)"]
    assert lines[-1].startswith("test: 3/3 batch in ")
