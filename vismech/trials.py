"""Trial runs: runs whose items are not their protocol's, kept off the board.

A task's protocol fixes its item set through a few config keys (`item_keys` of the task: `limit`, id ranges, per
class counts). A run whose command line sets one of them to another value than the protocol's (what the same
command gives without those overrides: the task's yaml and the experiment's) measures something else than the
board's tables do. Such a run is a trial: its record goes to `paths.trials_dir` and `leaderboard.md` is not
touched, so a quick `task.limit=16` neither adds a table nor renames the protocol's one. `trial=true` makes any
run a trial; `trial=false` files a run like any other (a record in `paths.results_dir`, on the board).
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import VismechError

CHOICES = ("auto", True, False)


def _touches(key: str, item_key: str) -> bool:
    """An override of `key` sets `task.<item_key>`: the key itself, a part of it, or a node that holds it."""
    full = f"task.{item_key}"
    return key == full or key.startswith(full + ".") or full.startswith(key + ".")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def protocol_differences(cfg: DictConfig, overrides: list[str], item_keys: tuple[str, ...], declared) -> list[str]:
    """`key=value (the protocol's: value)` for each item key the overrides moved away from the protocol.

    `declared(overrides)` composes the config of the same command without the given overrides."""
    touching = [o for o in overrides if any(_touches(_override_key(o), k) for k in item_keys)]
    if not touching:
        return []
    protocol = declared([o for o in overrides if o not in touching])
    found = []
    for key in [k for k in item_keys if any(_touches(_override_key(o), k) for o in touching)]:
        mine = _plain(OmegaConf.select(cfg, f"task.{key}", default=None))
        theirs = _plain(OmegaConf.select(protocol, f"task.{key}", default=None))
        if mine != theirs:
            found.append(f"task.{key}={mine} (the protocol's: {theirs})")
    return found


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose

    return compose(config_name="config", overrides=overrides)


def trial_reason(cfg: DictConfig) -> str | None:
    """Why this run (inside `vismech run`) is a trial, or None when it is filed on the board."""
    choice = cfg.get("trial", "auto")
    if choice not in CHOICES:
        raise VismechError(f"trial must be auto, true or false, got {choice!r}")
    if choice is True:
        return "trial=true"
    if choice is False:
        return None
    from hydra.core.hydra_config import HydraConfig

    from .registry import TASKS

    if not HydraConfig.initialized():
        return None
    overrides = list(HydraConfig.get().overrides.task)
    differences = protocol_differences(cfg, overrides, TASKS.get(cfg.task.name).item_keys, _compose)
    return "; ".join(differences) or None
