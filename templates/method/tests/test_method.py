"""The template method's own test: run it with `python -m pytest tests/` after installing the package."""
from __future__ import annotations

import torch

from vismech.datasets.world import WorldItems
from vismech.method import build_method
from vismech.methods.findings import PathFinding
from vismech.zoo import vit_world


def test_paths_are_the_argmax_of_gradient_times_activation_and_strength_one_is_exact():
    subject, data = vit_world.load(), WorldItems("test", limit=8).tensors()
    method = build_method("grad_x_activation_path", seed=0, task="neuron_path")
    finding = method.fit(subject, data)

    # the definition, computed independently: a * dp(y)/da at the CLS token of layer 2, by autograd
    captured = {}

    def keep(out):
        out.retain_grad()
        captured["a"] = out

    handle = subject.hook("ffn.2", keep)
    probs = subject.logits(data["image"]).softmax(-1)
    probs.gather(1, data["label"][:, None]).sum().backward()
    handle.remove()
    a = captured["a"]
    assert torch.equal(PathFinding.read(finding).paths[:, 2], (a * a.grad)[:, 0].argmax(-1))

    with torch.no_grad():
        base = subject.logits(data["image"])
        with method.edit(subject, finding, 1.0):
            assert torch.equal(subject.logits(data["image"]), base)
        with method.edit(subject, finding, 0.0):
            assert not torch.equal(subject.logits(data["image"]), base)
