"""The neuron paths of every path method on the same images, side by side (README's picture).

    .venv/bin/python scripts/plot_paths.py [--images 4] [--out docs/img/neuron_paths.png]

Fits each method on the first test images of the mini world with vit_world, and draws one panel per image: the unit
each method picks in each layer, marker area by the layer's share of the path's integrated gradients (filled where
positive, hollow where negative: the legend says so), each panel titled with the image's garment class. The JAS of
each path is printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vismech.datasets.world import WorldItems
from vismech.method import build_method
from vismech.methods.neuron_path import as_ranks, ffn_width
from vismech.plots import path_figure, save_figure
from vismech.zoo import vit_world

METHODS = ("neuron_path", "knowledge_neurons", "influence_pattern", "activation_path", "random_path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/img/neuron_paths.png"))
    args = parser.parse_args()
    subject, data = vit_world.load(), WorldItems("test", limit=args.images).tensors()
    shown = {}
    for name in METHODS:
        finding = build_method(name, seed=0).fit(subject, data)
        t = finding.tensors
        shown[name] = (as_ranks(t["paths"])[:, :, 0], t["layer_ig"])
        print(f"{name:18s} JAS (ref) per image: " + " ".join(f"{v:+.3f}" for v in t["jas_ref"].tolist()))
    figure = path_figure(shown, data["id"].tolist(), data["label"].tolist(), ffn_width(subject),
                         title="vit_world: one FFN unit per layer; area = the layer's share of the path's IG",
                         class_names=subject.class_names)
    save_figure(figure, args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
