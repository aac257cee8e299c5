"""Concept baselines: random and magnitude ablations zero as many weights per row as CAD at the same ratio; the UCE
edit solves its least-squares problem; the ESD fine-tune leaves the subject untouched; all edits are exact."""
from __future__ import annotations

import pytest
import torch

from vismech.datasets.concepts import ConceptData
from vismech.errors import VismechError
from tiny_sd import tiny_subject
from vismech.methods.cad import CADErase
from vismech.methods.concept_baselines import (ESD, UCE, MagnitudeWeights, RandomWeights, aligned_pair,
                                               cross_attention_projections, token_states, uce_solution)
from vismech.registry import METHODS
from vismech.subject import weights_digest


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return tiny_subject(1)


@pytest.fixture(scope="module")
def data():
    return ConceptData("a sneaker", seeds=(0,), steps=3, others=("a bag", "a red dress"))


def ff_weights(subject) -> dict[str, torch.Tensor]:
    return {s.name: subject.parameter(s) for s in subject.sites_of("ff.")}


def unet_output(subject, prompt: str = "a sneaker") -> torch.Tensor:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    cond = subject.pipeline.encode_prompt([prompt], "cpu", 1, False)[0]
    with torch.no_grad():
        return subject.unet(x, torch.tensor(400), encoder_hidden_states=cond, return_dict=False)[0]


def assert_exact_edits(method, subject, finding, strength: float) -> None:
    """Strength 0 reproduces the unedited outputs bit for bit; any edit restores the weights bit for bit."""
    digest, clean = weights_digest(subject.unet), unet_output(subject)
    with method.edit(subject, finding, 0.0):
        assert torch.equal(unet_output(subject), clean)
    with method.edit(subject, finding, strength):
        assert not torch.equal(unet_output(subject), clean)
    assert weights_digest(subject.unet) == digest and torch.equal(unet_output(subject), clean)


# --- ablation baselines --------------------------------------------------------------------------------------------

def test_random_control_zeroes_as_many_weights_per_row_as_cad(tiny, data):
    ratio = 0.1
    random = RandomWeights(seed=0)
    finding = random.fit(tiny, data)
    assert random.control and finding.meta["forward_passes"] == finding.meta["backward_passes"] == 0
    with random.edit(tiny, finding, ratio) as edit:
        for site, w in ff_weights(tiny).items():
            per_row = (w == 0).sum(1)
            assert (per_row >= int(ratio * w.shape[1])).all(), site
            assert edit.zeroed[site] == w.shape[0] * int(ratio * w.shape[1])
    # CAD zeroes at most that many (entries with a negative score are spared)
    cad = CADErase()
    cad_counts = cad.zeroed(cad.fit(tiny, data), ratio)
    assert all(cad_counts[s] <= edit.zeroed[s] for s in cad_counts)


def test_random_control_is_seeded(tiny, data):
    first, again = RandomWeights(seed=0).fit(tiny, data), RandomWeights(seed=0).fit(tiny, data)
    other = RandomWeights(seed=1).fit(tiny, data)
    assert first.digest() == again.digest() != other.digest()


def test_magnitude_zeroes_the_largest_weights_of_each_row(tiny, data):
    method = MagnitudeWeights()
    finding = method.fit(tiny, data)
    site, w = next(iter(ff_weights(tiny).items()))
    n = int(0.25 * w.shape[1])
    largest = w.detach().abs().topk(n, dim=1).indices
    with method.edit(tiny, finding, 0.25):
        assert (w.detach().gather(1, largest) == 0).all()
        assert int((w == 0).sum()) == w.shape[0] * n
    assert_exact_edits(method, tiny, finding, 0.25)


def test_ranking_baselines_refuse_signed_selections():
    with pytest.raises(VismechError, match="selection must be 'positive' for a ranking baseline.*got 'both'"):
        RandomWeights({"selection": "both"})


# --- UCE -----------------------------------------------------------------------------------------------------------

def test_uce_solution_satisfies_the_normal_equations():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, generator=g)
    keys, targets = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    kept = torch.randn(4, 5, generator=g)
    pairs, lam = [(keys, targets, 1.0), (kept, kept, 0.5)], 0.1
    new = uce_solution(w, pairs, lam).double()
    w64 = w.double()
    # gradient of sum s ||W k - W_old v||^2 + lam ||W - W_old||^2 at the solution
    grad = lam * (new - w64)
    for k, v, s in pairs:
        grad = grad + s * (new @ k.double().T - w64 @ v.double().T) @ k.double()
    assert float(grad.abs().max()) < 1e-5


def test_uce_maps_the_concept_onto_the_base_and_keeps_preserved_concepts(tiny, data):
    method = UCE()
    finding = method.fit(tiny, data)
    names = cross_attention_projections(tiny.unet)
    assert {n[len("new."):] for n in finding.tensors} == set(names)
    states, last = token_states(tiny, [data.concept, data.base])
    src, dst = aligned_pair(states, last)
    kept_states, kept_last = token_states(tiny, list(data.others))
    for name in names:
        old, new = tiny.unet.get_parameter(name).detach(), finding.tensors["new." + name]
        before = (src @ old.T - dst @ old.T).norm()
        after = (src @ new.T - dst @ old.T).norm()
        assert after < 0.5 * before, name
        kept = kept_states[0, kept_last[0]:]
        assert (kept @ new.T - kept @ old.T).norm() < before
    assert_exact_edits(method, tiny, finding, 1.0)


def test_uce_refuses_bad_values():
    with pytest.raises(VismechError, match="lam must be > 0, got 0"):
        UCE({"lam": 0.0})
    with pytest.raises(VismechError, match="erase_scale must be >= 0, got -1"):
        UCE({"erase_scale": -1.0})


# --- ESD -----------------------------------------------------------------------------------------------------------

def test_esd_fit_leaves_the_subject_untouched(tiny, data):
    digest = weights_digest(tiny.unet)
    method = ESD({"iterations": 3, "batch_size": 2, "parameters": "xattn", "lr": 1e-2})
    finding = method.fit(tiny, data)
    assert weights_digest(tiny.unet) == digest
    assert finding.meta["backward_passes"] == 3 and finding.meta["forward_passes"] >= 3 * 2
    trained = {n[len("new."):] for n in finding.tensors}
    assert trained and all(".attn2." in n for n in trained)
    changed = [n for n in trained if not torch.equal(finding.tensors["new." + n], tiny.unet.get_parameter(n).detach())]
    assert changed
    assert all(p.requires_grad for p in tiny.unet.parameters())
    assert_exact_edits(method, tiny, finding, 1.0)


@pytest.mark.parametrize("config, match", [
    ({"parameters": "all"}, "parameters must be one of xattn, noxattn, ff; got 'all'"),
    ({"iterations": 0}, "iterations must be >= 1, got 0"),
    ({"lr": 0.0}, "lr must be > 0, got 0"),
])
def test_esd_refuses_bad_values(config, match):
    with pytest.raises(VismechError, match=match):
        ESD(config)


def test_baselines_are_registered():
    for name, cls in (("random_weights", RandomWeights), ("magnitude_weights", MagnitudeWeights), ("uce", UCE),
                      ("esd", ESD)):
        assert METHODS.get(name) is cls and cls.tasks == ("concept",)
