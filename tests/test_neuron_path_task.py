"""The neuron_path task end to end through the CLI: records whose numbers follow from what the methods do."""
from __future__ import annotations

import pytest


def test_neuron_path_task_records(workspace):
    sweep = ["-m", "task=neuron_path", "method=noop,activation_path,neuron_path", "task.limit=8",
             f"hydra.sweep.dir={workspace.root / 'sweep'}"]
    assert workspace.run(*sweep) == 0
    records = {r["method"]["name"]: r for r in workspace.records()}
    assert set(records) == {"noop", "activation_path", "neuron_path"}

    def point(method, strength):
        return next(p["metrics"] for p in records[method]["sweep"] if p["strength"] == strength)

    # the no-op finds no path (JAS 0) and its edit changes nothing, at any strength
    for strength in (0.0, 2.0):
        assert point("noop", strength)["jas"]["value"] == 0.0
        assert point("noop", strength)["prob_ratio"]["item_values"] == [1.0] * 8
        assert point("noop", strength)["top1_change"]["value"] == 0.0
    found, activation = point("neuron_path", 0.0), point("activation_path", 0.0)
    assert found["jas"]["value"] > max(activation["jas"]["value"], 0.0)
    assert found["prob_ratio"]["value"] < 1 < point("neuron_path", 2.0)["prob_ratio"]["value"]
    assert found["prob_ratio"]["value"] < activation["prob_ratio"]["value"]
    assert records["neuron_path"]["headline"]["strength"] == 0.0
    assert records["neuron_path"]["cost"]["backward_passes"] == 6 + 2  # L + 2 for one batch of 8 images


def test_methods_of_other_tasks_are_refused(workspace, capsys):
    from vismech.registry import METHODS

    other = [e.name for e in METHODS.entries() if e.obj.tasks != ("*",) and "neuron_path" not in e.obj.tasks]
    assert other, "every task has methods of its own"
    for method in other:
        assert workspace.run("task=neuron_path", f"method={method}") == 2
        assert f"method '{method}' does not support task 'neuron_path'" in capsys.readouterr().err


def test_cost_script_counts_passes_and_finds_the_same_paths():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "cost_neuron_path.py"
    out = subprocess.run([sys.executable, str(script), "--images", "2", "--depth", "3"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    rows = {line[:24].strip(): line[24:].split() for line in out.splitlines() if line[:24].strip()}
    assert rows["backward passes"][:2] == ["5.000", "12.000"]  # L + 2 and L(L+1)/2 + 2L for L = 3
    assert rows["forward passes"][:2] == ["6.000", "8.000"]  # 1 + L + 2 and 2L + 2
    assert "same paths: True" in out


def test_paper_track_run_on_a_tiny_vit_and_an_image_folder(workspace, tmp_path, capsys):
    """The paper-track path end to end: timm_vit through `timm.create_model` with a weights file, an ImageNet-style
    folder read with the model's own preprocessing, a paper-track record on its own leaderboard table."""
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    sizes = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2, "img_size": 32, "num_classes": 3}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_file(timm.create_model("vit_base_patch16_224", **sizes).state_dict(), tmp_path / "vit.safetensors")
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "val" / f"n0{c}").mkdir(parents=True)
        for j in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "val" / f"n0{c}" / f"{j}.png")
    model = ["model=vit_b16", "model.params.arch=vit_base_patch16_224", f"model.params.weights={tmp_path / 'vit.safetensors'}",
             "+model.params.model_args={" + ",".join(f"{k}:{v}" for k, v in sizes.items()) + "}"]
    assert workspace.run(*model) == 2  # a paper-track model has no mini-world images
    assert "task.images=/path/to/imagenet/val" in capsys.readouterr().err
    assert workspace.run(*model, "method=neuron_path", f"task.images={tmp_path / 'val'}") == 0
    [record] = workspace.records()
    assert (record["subject"]["track"], record["subject"]["id"], record["items"]["size"]) == ("paper", "vit_b16", 9)
    assert record["items"]["name"] == "imagenet-folder:val[:64]"
    assert record["cost"]["fit_backward_passes"] == 2 + 2  # L + 2 for one batch, L = 2
    assert "## paper · neuron_path · vit_b16" in workspace.leaderboard.read_text()


@pytest.mark.parametrize("card, model, sweep", [
    ("paper_neuron_path", "vit_b16", {"method": "noop,random_path,activation_path,influence_pattern,knowledge_neurons,neuron_path_reference"}),
    ("paper_neuron_path", "mae_b16", {}),
    ("paper_pruning", "vit_b32", {"method.config.top_k": "1,5,10,20,50", "task.depth": "3,6,9,12"}),
])
def test_paper_repro_cards_compose_into_valid_task_configs(card, model, sweep):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from vismech.config import typed_config
    from vismech.registry import TASKS

    with initialize_config_module("vismech.configs", version_base=None):
        cfg = compose("config", overrides=[f"experiment={card}", f"model={model}", "task.images=/data/imagenet/val"],
                      return_hydra_config=True)
    task = TASKS.get(cfg.task.name)
    plain = OmegaConf.to_container(cfg.task)
    task_cfg = typed_config(task.Config, plain, f"task '{task.name}'")
    assert task_cfg.images == "/data/imagenet/val" and task_cfg.limit is None and cfg.seed == 42
    assert cfg.model.name == "timm_vit" and cfg.trainer.accelerator == "gpu"
    for key, values in sweep.items():
        assert cfg.hydra.sweeper.params[key] == values
    if card == "paper_pruning":
        assert (task_cfg.fit_per_class, task_cfg.eval_per_class) == (40, None)
