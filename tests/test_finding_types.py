"""The typed findings: the store saves and loads them as the same tensors (so cached findings read unchanged),
and each typed view gives back exactly what was built."""
from __future__ import annotations

import math

import pytest
import torch

from vismech.errors import VismechError
from vismech.finding import Finding
from vismech.methods.findings import BiasFinding, PathFinding, WeightScoreFinding
from vismech.store import Store


def finding_of(tensors: dict[str, torch.Tensor], method: str = "m") -> Finding:
    return Finding(method, "neuron_path", "subject", "digest", {"k": 1}, tensors, {"items": 3})


def test_path_finding_round_trips_through_the_store_with_the_untyped_layout(tmp_path):
    paths = torch.tensor([[3, 1], [0, 2], [1, 1]])
    found = PathFinding(torch.tensor([7, 8, 9]), torch.tensor([0, 1, 0]), paths, torch.tensor([0.5, 0.25, 1.0]),
                        extra={"layer_ig": torch.ones(3, 2)})
    # the layout methods wrote by hand before the type existed: same names, same digest, same cache entry
    by_hand = finding_of({"item_ids": torch.tensor([7, 8, 9]), "labels": torch.tensor([0, 1, 0]), "paths": paths,
                          "jas_ref": torch.tensor([0.5, 0.25, 1.0]), "layer_ig": torch.ones(3, 2)})
    typed = finding_of(found.tensors())
    assert typed.digest() == by_hand.digest()
    loaded, _, cached = Store(tmp_path).finding("key", lambda: (typed, {}))
    loaded, _, cached = Store(tmp_path).finding("key", lambda: (typed, {}))
    assert cached
    back = PathFinding.read(loaded)
    assert torch.equal(back.paths, paths) and torch.equal(back.item_ids, torch.tensor([7, 8, 9]))
    assert back.jas_ref.tolist() == [0.5, 0.25, 1.0] and set(back.extra) == {"layer_ig"}


def test_a_finding_without_paths_reads_as_none_and_a_partial_one_names_what_is_missing():
    assert PathFinding.read(finding_of({})) is None  # the no-op control
    with pytest.raises(VismechError, match="method 'broken' is not a path finding.*jas_ref"):
        PathFinding.read(finding_of({"paths": torch.zeros(2, 3), "item_ids": torch.arange(2),
                                     "labels": torch.zeros(2)}, method="broken"))


def test_sparse_weight_scores_expand_to_the_dense_map_with_the_fill():
    dense = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    index = torch.tensor([0, 2])
    found = WeightScoreFinding(sparse={"w": (index, dense.flatten()[index], torch.tensor([2, 2]))})
    back = WeightScoreFinding.read(finding_of(found.tensors()))
    expanded = back.dense(sign=-1.0, fill=math.inf)["w"]
    assert expanded.tolist() == [[-0.5, math.inf], [-2.0, math.inf]]
    assert set(found.tensors()) == {"alpha_index.w", "alpha_value.w", "alpha_shape.w"}
    with pytest.raises(VismechError, match="not a weight-score finding"):
        WeightScoreFinding.read(finding_of({"paths": torch.zeros(1)}))


def test_bias_finding_names_its_parts():
    found = BiasFinding(sae={"W_enc": torch.ones(4, 2)}, ranked_latents=torch.tensor([[3, 1], [0, 2]]),
                        calibration={"pi": torch.ones(2, 3), "strengths": torch.tensor([0.0, 1.0])},
                        extra={"probe.weight": torch.zeros(2, 4)})
    names = set(found.tensors())
    assert names == {"sae.W_enc", "latents.ranked", "calibration.pi", "calibration.strengths", "probe.weight"}
    back = BiasFinding.read(finding_of(found.tensors()))
    assert back.directions is None and torch.equal(back.ranked_latents, found.ranked_latents)
    assert set(back.calibration) == {"pi", "strengths"} and set(back.extra) == {"probe.weight"}
