"""Pictures a reader need not decode: classes by name, and a legend that says what the markers mean."""
from __future__ import annotations

import torch

from vismech.datasets.world import CLASSES
from vismech.plots import matrix_figure, path_figure


def _legend_texts(figure) -> list[str]:
    return [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_path_figure_names_classes_and_explains_hollow_markers():
    units = torch.tensor([[1, 2, 3], [0, 0, 1]])
    shares = torch.tensor([[0.5, -0.2, 0.7], [0.1, 0.3, -0.4]])  # negative shares are drawn hollow
    figure = path_figure({"neuron_path": (units, shares), "activation_path": (units, None)}, [7, 8], [9, 0], width=4,
                         class_names=CLASSES)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["item 7: ankle boot", "item 8: t-shirt"]
    legend = _legend_texts(figure)
    assert legend[:2] == ["neuron_path", "activation_path"]
    assert "hollow: IG share < 0 (works against the class)" in legend
    assert "filled: the layer's IG share > 0" in legend
    hollow = [c for c in figure.axes[0].collections[0].get_facecolors() if c[3] == 0]
    assert len(hollow) == 1  # the one negative share of the first image

    without = path_figure({"activation_path": (units, None)}, [7, 8], [9, 0], width=4)
    assert [ax.get_title() for ax in without.axes] == ["item 7: class 9", "item 8: class 0"]
    assert not any("hollow" in t for t in _legend_texts(without))  # no IG shares, no hollow markers to explain


def test_class_matrix_ticks_are_class_names():
    figure = matrix_figure(torch.eye(len(CLASSES)), "similarity", "cosine", class_names=CLASSES)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)


def test_the_mini_vit_names_its_classes(vit_subject):
    assert vit_subject.class_names == CLASSES and len(CLASSES) == vit_subject.num_classes
