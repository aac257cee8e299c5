"""The tables that end `vismech run`: what a run measured and where it put everything.

One table per run: the method, every metric at the headline point with its 95% interval, the record's path and
whether it was written, the pictures' folder, and what happened to the leaderboard. A sweep (`-m`) ends with one
more table, a row per run. The text is made by rich and wraps to the terminal's width (120 columns in a log).
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from .results import MetricResult, format_estimate

BOARD = {"changed": "{board}: changed", "unchanged": "{board}: unchanged (nothing on it changed)",
         "off": "not updated (paths.leaderboard=null)",
         "trial": "not touched: a trial run is never on the board"}


def interval(m: MetricResult) -> str:
    return format_estimate(m)


def shown_path(path: Path | str | None) -> str:
    """Relative to the working folder when inside it (shorter, and what a person types next)."""
    if path is None:
        return "none"
    path = Path(path).absolute()
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def record_state(outcome) -> str:
    if not outcome.written:
        return "unchanged: the file holds this result already (same values, config and code), not rewritten"
    return "written (a trial's record: outside the results folder)" if outcome.trial else "written"


def board_state(outcome) -> str:
    return BOARD[outcome.board].format(board=shown_path(outcome.board_file))


def run_table(outcome) -> Table:
    """One run: rows of (what, value)."""
    r = outcome.record
    point = r.headline_point() or next(p for p in r.sweep if p.strength == r.headline.strength)
    table = Table(title=f"{r.method.name} · {r.task} · {r.subject.id} ({r.subject.track} track)", box=box.SIMPLE,
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("method", r.method.name + (" (control)" if r.method.control else "")
                  + f", config {r.method.config_digest[:10]}, seed {r.seeds.run_seed}")
    table.add_row("items", f"{r.items.size} ({r.items.name})")
    where = {"sweep point": "", "interpolated": " (interpolated between sweep points)",
             "no point within budget": " — no point within budget: the metrics below are the first sweep point's"}
    table.add_row("headline", f"strength {point.strength:.4g}{where[r.headline.status]}: {r.headline.rule}")
    names = [r.primary_metric] + sorted(n for n in point.metrics if n != r.primary_metric)
    for name in names:
        m = point.metrics[name]
        note = f"  {'95% CI' if m.ci_low is not None else m.ci_note}, n={m.n}, {m.direction} is better" + ("; the primary metric" if name == r.primary_metric
                                                                  else "")
        table.add_row(name, interval(m) + note)
    table.add_row("record", f"{shown_path(outcome.path)}\n{record_state(outcome)}")
    if outcome.trial:
        table.add_row("trial", outcome.trial)
    table.add_row("pictures", shown_path(outcome.pictures))
    table.add_row("board", board_state(outcome))
    return table


def sweep_table(outcomes: list) -> Table:
    """A row per run of a sweep: its headline (primary metric), where its record went and the board's state
    (changed, unchanged, trial: not touched, off: paths.leaderboard=null)."""
    table = Table(title=f"{len(outcomes)} runs", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("method", no_wrap=True)
    table.add_column("headline [95% CI]", no_wrap=True)
    table.add_column("record", overflow="fold", ratio=1)
    table.add_column("board", no_wrap=True)
    for outcome in outcomes:
        r = outcome.record
        point = r.headline_point()
        head = "no point within budget" if point is None else interval(point.metrics[r.primary_metric])
        table.add_row(r.method.name, f"{r.primary_metric} {head}",
                      f"{shown_path(outcome.path)} ({'written' if outcome.written else 'unchanged'})", outcome.board)
    return table


def render(table: Table) -> str:
    """The table as plain text at the terminal's width (COLUMNS, else 120 off a terminal)."""
    buffer = io.StringIO()
    Console(file=buffer, width=shutil.get_terminal_size((120, 24)).columns, color_system=None,
            force_terminal=False, highlight=False, markup=False).print(table)  # cells are text, "[..]" too
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())  # no padding in a log
