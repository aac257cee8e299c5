"""Progress of every loop a person waits for (fits, sampling, the trainer's train and test loops, verify).

At a terminal (stderr is a tty and CI is not set): tqdm's live bar, cleared when the loop ends.
Off a terminal (a log file, a pipe): a bar would only pile carriage returns into the file, so the loop prints one
whole line at most every `INTERVAL_S` seconds, with done/total, rate and ETA, and one line when it ends: a log
shows that the run is alive and how far it is. Under `CI=true` the interval is `CI_INTERVAL_S`, which keeps a CI log
brief while a long job still shows it has not hung. `VISMECH_PROGRESS_INTERVAL` (seconds) sets the interval of
the lines explicitly.

The lines come from a tqdm subclass that overrides `display`, the hook tqdm documents for other front ends, so
counting, rates and the iteration protocol stay tqdm's.
"""
from __future__ import annotations

import functools
import os
import sys
import threading

from tqdm import tqdm

from .errors import VismechError

INTERVAL_S = 10.0
CI_INTERVAL_S = 60.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def progress_enabled() -> bool:
    """True where a live bar is wanted: a person at a terminal, not CI and not a log."""
    return sys.stderr.isatty() and not in_ci()


def line_interval() -> float:
    """Seconds between two progress lines off a terminal."""
    value = os.environ.get("VISMECH_PROGRESS_INTERVAL")
    if value is None:
        return CI_INTERVAL_S if in_ci() else INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise VismechError(f"VISMECH_PROGRESS_INTERVAL must be a number of seconds >= 0, got {value!r}")
    return seconds


class ProgressLines(tqdm):
    """tqdm that writes whole lines: after an update at least `mininterval` seconds after the last line, from a
    heartbeat when a long step gives no update for that long (a log never stays silent for more than one
    interval), and a last one when the loop ends."""

    monitor_interval = 0  # tqdm's monitor thread only tunes live bars

    def __init__(self, *args, **kwargs):
        kwargs.update(leave=False, miniters=1, dynamic_ncols=False, ncols=None)
        self._started = False
        super().__init__(*args, **kwargs)
        self._started = True  # tqdm's own first refresh is over: nothing to report before any work
        self._stop = threading.Event()
        if not self.disable and self.mininterval > 0:
            threading.Thread(target=self._heartbeat, name="vismech-progress", daemon=True).start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.mininterval):
            with self._lock:
                if self.disable or self._stop.is_set():
                    return
                if self._time() - self.last_print_t >= self.mininterval:
                    self.display()
                    self.last_print_t = self._time()

    def line(self, final: bool = False) -> str:
        """`desc: done/total unit (pct%), rate, elapsed, ETA`; at the end the totals and the mean rate, or where
        the loop stopped."""
        n, total, elapsed = self.n, self.total, self._time() - self.start_t
        rate = n / elapsed if elapsed > 0 and n > 0 else None
        rate_text = f"? {self.unit}/s" if rate is None else (
            f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
        done = f"{n:g}" if total is None else f"{n:g}/{total:g}"
        pct = f" ({100 * n / total:.0f}%)" if total else ""
        head = f"{self.desc}: " if self.desc else ""
        if final and (total is None or n >= total):
            return f"{head}{done} {self.unit} in {self.format_interval(elapsed)} ({rate_text})"
        if final:  # left early: an exception, or a loop that ends before its total
            return f"{head}stopped at {done} {self.unit} after {self.format_interval(elapsed)} ({rate_text})"
        eta = "?" if not total or not rate else self.format_interval((total - n) / rate)
        return f"{head}{done} {self.unit}{pct}, {rate_text}, elapsed {self.format_interval(elapsed)}, ETA {eta}"

    def _write(self, text: str) -> None:
        self.fp.write(text + "\n")
        getattr(self.fp, "flush", lambda: None)()

    def display(self, msg=None, pos=None):
        # tqdm calls this at construction (nothing to say yet), after an update once `mininterval` has passed, and
        # with msg='' to clear a bar on close, which a log has no use for; the closing line comes from `close`
        if msg is not None or not self._started or (self.total and self.n >= self.total):
            return False
        self._write(self.line())
        return True

    def close(self):
        if not self.disable:
            self._stop.set()
            if self.n > 0:
                with self._lock:
                    self._write(self.line(final=True))
        super().close()


def progress_bar(iterable=None, *, total: int | float | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True):
    """Progress of a loop: a live bar at a terminal, a line every ~10 s off it (see the module's doc); nothing
    when not `enabled` (a caller's own switch, e.g. a test's quiet training).

    Use as `with progress_bar(total=n, desc="fit", unit="img") as bar: ... bar.update(k)`, or wrap an iterable."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if progress_enabled():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit, mininterval=line_interval(), file=sys.stderr)


def trainer_progress(enabled: bool = True) -> dict:
    """Trainer options for the progress of its loops: Lightning's own bar at a terminal, lines off it."""
    if not enabled:
        return {"enable_progress_bar": False, "callbacks": []}
    if progress_enabled():
        return {"enable_progress_bar": True, "callbacks": []}
    return {"enable_progress_bar": False, "callbacks": [trainer_progress_class()()]}


@functools.cache
def trainer_progress_class():
    """The Lightning callback behind `trainer_progress` (built on first use: a plain loop needs no Lightning)."""
    from lightning.pytorch.callbacks import Callback

    class TrainerProgress(Callback):
        """Lines for the trainer's train and test loops, on rank zero only (every rank runs the same loop)."""

        def __init__(self):
            self._bar = None

        def _start(self, trainer, desc: str, total, unit: str) -> None:
            if trainer.is_global_zero:
                finite = total is not None and total != float("inf")
                self._bar = progress_bar(total=int(total) if finite else None, desc=desc, unit=unit)

        def _step(self) -> None:
            if self._bar is not None:
                self._bar.update(1)

        def _end(self) -> None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

        def on_train_start(self, trainer, module):
            self._start(trainer, "train", trainer.estimated_stepping_batches, "step")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self._step()

        def on_train_end(self, trainer, module):
            self._end()

        def on_test_start(self, trainer, module):
            self._start(trainer, "test", sum(trainer.num_test_batches), "batch")

        def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            self._step()

        def on_test_end(self, trainer, module):
            self._end()

        def on_exception(self, trainer, module, exception):
            self._end()

    return TrainerProgress
