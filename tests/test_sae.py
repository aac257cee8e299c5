"""The TopK SAE of DiffLens: token layout, the forward pass against hand-computed values, FVU, decoder constraints,
the learning-rate schedule, training (determinism, recovery of a planted dictionary) and the report."""
from __future__ import annotations

import pytest
import torch

from vismech.errors import VismechError
from vismech.methods.sae import SAETraining, TopKSAE, fvu, from_tokens, lr_factor, sae_report, to_tokens, train_sae


def hand_sae() -> TopKSAE:
    """d_in 2, 3 latents, k 2: W_enc rows (1, 0), (0, 1), (1, 1); b_enc (0, 0, -0.5); decoder columns e1, e2, e1."""
    sae = TopKSAE(2, 3, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, -0.5]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
    return sae


def test_tokens_are_spatial_positions_and_round_trip():
    h = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    tokens = to_tokens(h)
    assert tokens.shape == (8, 3)
    assert torch.equal(tokens[5], h[1, :, 0, 1])  # image 1, row 0, column 1: token 4 + 1
    assert torch.equal(from_tokens(tokens, h.shape), h)
    assert torch.equal(from_tokens(to_tokens(h, "map"), h.shape, "map"), h)
    assert to_tokens(h, "map").shape == (2, 12)
    with pytest.raises(VismechError, match="layout"):
        to_tokens(h, "kernel8")


def test_forward_matches_hand_computation():
    sae = hand_sae()
    with torch.no_grad():
        # h = (3, 2): centred (2, 1); pre = relu(2, 1, 2.5) -> top-2 keeps latents 2 and 0
        z = sae.encode(torch.tensor([[3.0, 2.0]]))
        assert torch.equal(z, torch.tensor([[2.0, 0.0, 2.5]]))
        assert torch.equal(sae.decode(z), torch.tensor([[5.5, 1.0]]))  # 2 e1 + 2.5 e1 + (1, 1)
        # h = (-1, 3): centred (-2, 2); pre = relu(-2, 2, -0.5) = (0, 2, 0): ReLU comes before TopK, one survives
        z = sae.encode(torch.tensor([[-1.0, 3.0]]))
        assert torch.equal(z, torch.tensor([[0.0, 2.0, 0.0]]))
        assert torch.equal(sae.decode(z), torch.tensor([[1.0, 3.0]]))
        assert torch.equal(sae.decode_delta(z), torch.tensor([[0.0, 2.0]]))  # no bias


def test_uncentred_checkpoint_folds_into_the_encoder_bias():
    gen = torch.Generator().manual_seed(0)
    w_enc, b_enc = torch.randn(6, 3, generator=gen), torch.randn(6, generator=gen)
    w_dec, b_dec = torch.randn(3, 6, generator=gen), torch.randn(3, generator=gen)
    sae = TopKSAE.from_uncentred(w_enc, b_enc, w_dec, b_dec, k=2)
    h = torch.randn(10, 3, generator=gen)
    pre = torch.relu(h @ w_enc.T + b_enc)  # the checkpoint's own forward: its encoder reads h itself
    values, index = pre.topk(2, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, index, values)
    torch.testing.assert_close(sae.encode(h), z)


def test_fvu_by_hand():
    h = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    # per-channel means (1, 2): total variance 4; error (1, 0) + (1, 0) -> 2
    assert float(fvu(h, torch.tensor([[1.0, 1.0], [1.0, 3.0]]))) == pytest.approx(0.5)
    assert float(fvu(h, h)) == 0.0


def test_parallel_gradient_removal_leaves_only_orthogonal_components():
    sae = TopKSAE(4, 8, 2).init_from(torch.randn(16, 4), torch.Generator().manual_seed(1))
    sae.W_dec.grad = torch.randn(4, 8)
    sae.remove_parallel_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(0).abs().max() < 1e-6
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(8))


def test_lr_schedule_warms_up_then_decays_linearly():
    assert [lr_factor(s, 100, 0.1) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, 100, 0.1) == 1.0
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0.1) == pytest.approx(1 / 90)


def planted(n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Tokens that are sums of 2 of 16 unit directions in 8-d with positive weights: an exact 2-sparse code exists."""
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(16, 8, generator=gen), dim=1)
    which = torch.stack([torch.randperm(16, generator=gen)[:2] for _ in range(n)])
    weights = torch.rand(n, 2, generator=gen) + 0.5
    return (weights[..., None] * atoms[which]).sum(1) + 0.3


def test_training_is_deterministic_and_recovers_a_planted_sparse_code():
    tokens, held_out = planted(5120).split([4096, 1024])
    training = SAETraining(k=2, expansion=4, steps=600, batch_tokens=256, lr=1e-2)
    sae, curve = train_sae(tokens, training, torch.Generator().manual_seed(0))
    again, _ = train_sae(tokens, training, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(sae.parameters(), again.parameters()))
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(32))
    report = sae_report(sae, held_out)
    assert report["fvu"] < 0.1 < curve[0] / 4, (curve[:3], report)  # learnt: the FVU fell more than 4x
    assert report["l0"] <= 2 and report["n_latents"] == 32


def test_report_counts_dead_latents_and_l0():
    sae = hand_sae()
    # (-1, 3) fires latent 1 only; (0, 3) -> pre relu(-1, 2, 0.5) fires latents 1 and 2: latent 0 is dead
    report = sae_report(sae, torch.tensor([[-1.0, 3.0], [0.0, 3.0]]))
    assert report["dead_fraction"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["l0"] == pytest.approx(1.5)


def test_finding_tensors_round_trip_and_bad_values_are_one_line_errors():
    sae = hand_sae()
    back = TopKSAE.from_tensors(sae.tensors(), k=2)
    h = torch.tensor([[3.0, 2.0], [0.0, 3.0]])
    assert torch.equal(back(h), sae(h))
    with pytest.raises(VismechError, match="no SAE tensors"):
        TopKSAE.from_tensors({}, k=2)
    with pytest.raises(VismechError, match="k must be"):
        TopKSAE(2, 3, 4)
    with pytest.raises(VismechError, match="warmup"):
        SAETraining(warmup=1.5).validate()
