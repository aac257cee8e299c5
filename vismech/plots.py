"""Pictures saved with runs: figures are built on `matplotlib.figure.Figure` (no pyplot, no global state)."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

MARKERS = "os^Dvx*P"


def save_figure(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """The figure as a PNG file, written atomically (a reader never sees half a picture)."""
    from .io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def path_figure(paths: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]], item_ids: Sequence[int],
                labels: Sequence[int], width: int, title: str = "") -> Figure:
    """One panel per image: each method's unit index per layer (its path), marker area by the layer's share of the
    path-IG attribution, filled where that share is positive. paths: {method: (units (n, L), layer scores (n, L) or
    None)}, rows aligned with item_ids."""
    n = len(item_ids)
    figure = Figure(figsize=(3.2 * n, 3.4))
    axes = figure.subplots(1, n, squeeze=False)[0]
    scale = max((float(s.abs().max()) for _, s in paths.values() if s is not None and s.numel()), default=0.0) or 1.0
    for col, (ax, item, label) in enumerate(zip(axes, item_ids, labels)):
        for (name, (units, scores)), marker in zip(paths.items(), MARKERS):
            layers = torch.arange(units.shape[1])
            row = units[col]
            size = 20 + 180 * (scores[col].abs() / scale) if scores is not None else torch.full_like(layers, 40.0)
            ax.plot(layers, row, lw=0.8, alpha=0.6)
            colour = ax.lines[-1].get_color()
            positive = scores[col] >= 0 if scores is not None else torch.ones_like(layers, dtype=torch.bool)
            ax.scatter(layers, row, s=size, marker=marker, edgecolors=colour,
                       facecolors=[colour if p else "none" for p in positive.tolist()], label=name)
        ax.set(title=f"item {item} (class {label})", xlabel="layer", ylim=(-0.5, width - 0.5))
        ax.set_xticks(range(units.shape[1]))
        if col == 0:
            ax.set_ylabel("FFN unit index")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        figure.suptitle(title, y=1.04)
    return figure


def matrix_figure(matrix: torch.Tensor, title: str, label: str) -> Figure:
    figure = Figure(figsize=(4.6, 3.8))
    ax = figure.subplots()
    image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set(title=title, xlabel="class", ylabel="class")
    figure.colorbar(image, ax=ax, label=label)
    return figure


def image_grid(columns: Sequence[tuple[str, torch.Tensor]], rows: Sequence[str], title: str) -> Figure:
    """Rows = prompts (one seed each), columns = settings on the same seeds."""
    figure = Figure(figsize=(1.1 * len(columns) + 1.4, 0.9 * len(rows) + 0.6))
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for c, (label, images) in enumerate(columns):
        for r in range(len(rows)):
            ax = axes[r][c]
            ax.imshow(images[r].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=7)
            if c == 0:
                ax.set_ylabel(rows[r], fontsize=6, rotation=0, ha="right", va="center")
    figure.suptitle(title, fontsize=9)
    return figure


def tradeoff_svg(records: Sequence, x_metric: str | None = None) -> str:
    """Every record's sweep of one leaderboard table as a curve: the primary metric (with its intervals) against
    `x_metric` (a quality metric, with its intervals) or the strength; each headline point starred. SVG with fixed
    ids and no date, so the same records give the same bytes."""
    import matplotlib

    first = records[0]
    primary = first.primary_metric
    figure = Figure(figsize=(6.4, 4.2))
    ax = figure.subplots()
    for r in records:
        def coords(point, strength):
            y = point.metrics[primary]
            if x_metric is None or x_metric not in point.metrics:
                return strength, None, y
            return point.metrics[x_metric].value, point.metrics[x_metric], y

        xs, ys, xerr, yerr = [], [], [[], []], [[], []]
        for point in sorted(r.sweep, key=lambda p: p.strength):
            x, xm, y = coords(point, point.strength)
            xs.append(x)
            ys.append(y.value)
            for err, m, v in ((xerr, xm, x), (yerr, y, y.value)):
                low = v if m is None or m.ci_low is None else m.ci_low
                high = v if m is None or m.ci_high is None else m.ci_high
                err[0].append(v - low)
                err[1].append(high - v)
        label = f"{r.method.name} {r.method.config_digest[:6]}" + (" (control)" if r.method.control else "")
        line = ax.errorbar(xs, ys, xerr=xerr if x_metric else None, yerr=yerr, marker="o", ms=3, lw=1, capsize=2,
                           label=label)
        head = r.headline_point()
        if head is not None:
            x, _, y = coords(head, r.headline.strength)
            ax.plot([x], [y.value], marker="*", ms=12, color=line.lines[0].get_color(), mec="black", mew=0.5,
                    ls="none")
    m = first.sweep[0].metrics[primary]
    ax.set(xlabel=x_metric or "strength", ylabel=f"{primary} ({m.direction} is better)",
           title=f"{first.subject.track} · {first.task} · {first.subject.id}: ★ headline point, bars 95% intervals")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    figure.tight_layout()
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "vismech", "svg.fonttype": "path"}):
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()
