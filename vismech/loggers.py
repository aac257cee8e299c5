"""Logger factories used by configs/logger/*.yaml."""
from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(str(Path.home() / ".netrc")).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(**kwargs):
    """A Lightning WandbLogger that runs offline unless the user is logged in or WANDB_MODE says otherwise."""
    from lightning.pytorch.loggers import WandbLogger

    if "offline" not in kwargs and not os.environ.get("WANDB_MODE"):
        kwargs["offline"] = not wandb_logged_in()
    return WandbLogger(**kwargs)


def close(loggers: list, record_path=None, *, failed: bool = False) -> None:
    """End each logger's run, after a success or a failure alike. W&B gets the result record as a file of the run
    and is finished (its summary written; exit code 1 marks a failed run); a run that never started is left alone.
    The others are finalized with the run's status (CSV writes the rows it still holds)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            if getattr(lg, "_experiment", None) is None:  # nothing was logged: starting a run to end it helps no one
                continue
            if record_path is not None:
                lg.experiment.save(str(record_path), base_path=str(Path(record_path).parent), policy="now")
            lg.experiment.finish(exit_code=1 if failed else 0)
        else:
            lg.finalize("failed" if failed else "success")


def save_artifacts(artifacts: dict, folder: Path, loggers: list) -> list[Path]:
    """Figures as PNG and tables as JSON in the run folder (atomically), and both to W&B when it is on.

    Figures are `matplotlib.figure.Figure` objects made without pyplot, so no global figure state is kept."""
    from lightning.pytorch.loggers import WandbLogger
    from matplotlib.figure import Figure

    from .io import atomic_write_json
    from .plots import save_figure

    written = []
    wandb = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    for stem, item in artifacts.items():
        if isinstance(item, Figure):
            path = save_figure(item, Path(folder) / f"{stem}.png")
            for lg in wandb:
                lg.log_image(key=stem, images=[str(path)])
        else:
            path = Path(folder) / f"{stem}.json"
            atomic_write_json(path, item)
            for lg in wandb:
                lg.experiment.save(str(path), base_path=str(folder), policy="now")
        written.append(path)
    return written
