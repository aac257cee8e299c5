"""Trade-off curves of a table as SVG: every record's sweep with its 95% intervals, drawn by matplotlib.

The SVG is deterministic: a fixed hash salt for its element ids and no creation date, so the same records give the
same bytes."""
from __future__ import annotations

import io

import matplotlib
from matplotlib.figure import Figure

from ..leaderboard import Table
from ..plots import MARKERS

# The quality each task's headline point is held to (its headline rule), drawn against the primary metric.
QUALITY = {"bias": "fid", "concept": "other_accuracy"}


def _errors(points, name: str) -> tuple[list[float], list[list[float]]]:
    values = [p.metrics[name].value for p in points]
    return values, [[v - p.metrics[name].ci_low for v, p in zip(values, points)],
                    [p.metrics[name].ci_high - v for v, p in zip(values, points)]]


def tradeoff_svg(table: Table, salt: str | None = None) -> str:
    """Panel 1: the primary metric against strength; panel 2 (tasks with a quality budget): against quality.
    `salt` (default: the table's slug) makes the SVG's element ids, unique per picture."""
    primary = table.columns[0].name
    quality = QUALITY.get(table.task)
    quality = quality if quality in {c.name for c in table.columns} else None
    figure = Figure(figsize=(9.6 if quality else 5.2, 3.8))
    axes = figure.subplots(1, 2 if quality else 1, squeeze=False)[0]
    for k, row in enumerate(table.rows):
        r = row.record
        points = sorted(r.sweep, key=lambda p: p.strength)
        label = f"{r.method.name} {r.method.config_digest[:8]}" + (" (control)" if r.method.control else "")
        style = {"marker": MARKERS[k % len(MARKERS)], "capsize": 2, "lw": 1, "ms": 4, "label": label,
                 "ls": "--" if r.method.control else "-"}
        y, yerr = _errors(points, primary)
        axes[0].errorbar([p.strength for p in points], y, yerr=yerr, **style)
        if quality:
            x, xerr = _errors(points, quality)
            axes[1].errorbar(x, y, xerr=xerr, yerr=yerr, **style)
    direction = table.columns[0].direction
    axes[0].set(xlabel="strength (each method's own scale)", ylabel=f"{primary} ({direction} is better)")
    if quality:
        q = next(c for c in table.columns if c.name == quality)
        axes[1].set(xlabel=f"{quality} ({q.direction} is better)", ylabel=primary)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(table.title, fontsize=10)
    buffer = io.StringIO()
    # text stays text (the page's fonts draw it): a third of the size of glyphs drawn as paths
    with matplotlib.rc_context({"svg.hashsalt": salt or table.slug, "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()
