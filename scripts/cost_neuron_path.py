"""Cost of the NeuronPath search per image: vismech's procedure against the reference's calls, side by side.

    .venv/bin/python scripts/cost_neuron_path.py [--images 8] [--depth 12]

Counts forward and backward passes through the model (they do not drift with the machine) and wall time, on the
same model and images, and checks that both procedures find the same paths. `--depth 0` uses the shipped
vit_world (6 layers); another depth builds a randomly initialised timm ViT of vit_world's width with that many
layers, so the 12-layer count of the paper's ViT-B can be shown on a CPU.
"""
from __future__ import annotations

import argparse
import time

import torch

from vismech.datasets.world import WorldItems
from vismech.methods.neuron_path import NeuronPath
from vismech.subject import ClassifierSubject, vit_ffn_sites
from vismech.zoo import vit_world


def subject_of_depth(depth: int) -> ClassifierSubject:
    if depth == 0:
        return vit_world.load()
    torch.manual_seed(0)
    import timm

    model = timm.create_model(vit_world.ARCH, pretrained=False, **{**vit_world.ARCH_KWARGS, "depth": depth})
    shipped = vit_world.load()
    return ClassifierSubject(f"vit_world_random_depth{depth}", model, vit_ffn_sites(model), preprocess=shipped.preprocess,
                             num_classes=shipped.num_classes, input_shape=shipped.input_shape)


def measure(subject: ClassifierSubject, data: dict, procedure: str) -> tuple[dict, torch.Tensor]:
    method = NeuronPath({"procedure": procedure, "batch_size": len(data["id"]), "score_activation_path": True})
    start = time.perf_counter()
    finding = method.fit(subject, data)
    seconds = time.perf_counter() - start
    n = len(data["id"])
    meta = finding.meta
    return ({"forward passes": meta["forward_passes"], "backward passes": meta["backward_passes"],
             "forward rows / image": meta["forward_rows_per_image"], "wall s / image": seconds / n},
            finding.tensors["paths"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images, searched as one batch (default 8)")
    parser.add_argument("--depth", type=int, default=12, help="layers; 0 = the shipped 6-layer vit_world")
    opts = parser.parse_args()
    subject = subject_of_depth(opts.depth)
    data = WorldItems("test", limit=opts.images).tensors()
    layers = len(subject.model.blocks)
    ours, ours_paths = measure(subject, data, "vismech")
    ref, ref_paths = measure(subject, data, "reference")
    print(f"NeuronPath search, {layers} layers, {opts.images} images in one batch, m = 20, "
          f"model {subject.id}, {torch.get_num_threads()} CPU threads")
    print(f"{'':24}{'vismech':>12}{'reference':>12}{'ratio':>8}")
    for key in ours:
        ratio = ref[key] / ours[key] if ours[key] else float("nan")
        print(f"{key:24}{ours[key]:>12.3f}{ref[key]:>12.3f}{ratio:>8.2f}")
    print(f"same paths: {torch.equal(ours_paths, ref_paths)}; expected backward passes: "
          f"L + 2 = {layers + 2} vs L(L+1)/2 + 2L = {layers * (layers + 1) // 2 + 2 * layers}")


if __name__ == "__main__":
    main()
