"""Every experiment config composes, resolves, and names a known task, model and method for every sweep value.

A renamed key or method would otherwise first fail in a user's run: each `configs/experiment/*.yaml` is composed
with Hydra's compose API, every method of its sweep (and every value of its other sweeps, with the first method)
is resolved, and the task's and method's typed configs are built from the result, strengths checked.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))


def compose(overrides: list[str], hydra: bool = False):
    from hydra import compose as hydra_compose, initialize_config_module

    with initialize_config_module("vismech.configs", version_base=None):
        return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)


@contextmanager
def hydra_run(cfg, output_dir: Path):
    """Hydra's run-time config, as during a run, for the length of the block (then unset for the other tests)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = None


def sweep_values(key: str, value: str) -> list[str]:
    """The values of a Hydra sweep string (`a,b,'c d'`), as overrides of one job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
    return [f"{key}={v}" for v in override.sweep_string_iterator()] if override.is_sweep_override() else \
        [f"{key}={value}"]


def jobs(experiment: str) -> list[list[str]]:
    """One override list per job checked: each method of the sweep, then each value of the other sweeps."""
    swept = compose([f"experiment={experiment}"], hydra=True).hydra.sweeper.params or {}
    sweeps = {key: sweep_values(key, str(value)) for key, value in swept.items()}
    methods = sweeps.pop("method", [None])
    first = [values[0] for values in sweeps.values()]
    out = [[m, *first] if m else first for m in methods]
    base = [methods[0]] if methods[0] else []
    for key, values in sweeps.items():
        rest = [v for v in first if not v.startswith(key + "=")]
        out += [[*base, *rest, value] for value in values[1:]]
    return out


def test_the_glob_sees_every_experiment():
    assert {"mini", "mini_bias", "mini_bias_ddpm", "mini_concept", "mini_concept_amplify", "mini_pruning",
            "paper_cad_objects", "paper_difflens_ddpm", "paper_difflens_sd", "paper_neuron_path",
            "paper_pruning"} <= set(EXPERIMENTS)


def test_sweep_values_split_like_hydra():
    assert sweep_values("task.target", "tench,'English springer'") == ["task.target=tench",
                                                                         "task.target='English springer'"]
    assert sweep_values("task.depth", "3") == ["task.depth=3"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_resolves_and_names_known_parts(experiment, tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from vismech.config import typed_config
    from vismech.method import build_method
    from vismech.registry import METHODS, MODELS, TASKS

    for job in jobs(experiment):
        cfg = compose([f"experiment={experiment}", *job], hydra=True)
        with hydra_run(cfg, tmp_path):  # the logger's save_dir reads Hydra's runtime output_dir
            # every interpolation of the job's config resolves (Hydra's own node is Hydra's to fill at run time)
            plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                           resolve=True)
            assert OmegaConf.select(cfg, "hydra.run.dir").startswith(str(plain["paths"]["runs_dir"]))
        task, method, model = plain["task"]["name"], plain["method"]["name"], plain["model"]["name"]
        assert task in TASKS.names() and method in METHODS.names() and model in MODELS.names(), (experiment, job)
        task_cls = TASKS.get(task)
        task_cfg = typed_config(task_cls.Config, plain["task"], f"task '{task}'")
        built = build_method(method, plain["method"].get("config"), seed=plain["seed"], task=task)
        assert [task_cls.check_strength(built, s) for s in task_cfg.strengths] == list(task_cfg.strengths)
        for override in OverridesParser.create().parse_overrides(job):  # the job's values reached the config
            path = override.key_or_group
            if path in ("task", "method", "model"):  # the group option Hydra chose (a *_reference method yaml
                # runs its method, under that method's name, with the released code's settings)
                assert cfg.hydra.runtime.choices[path] == override.value(), (experiment, override)
            else:
                assert OmegaConf.select(cfg, path) == override.value(), (experiment, override)
