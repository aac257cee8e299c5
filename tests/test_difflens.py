"""DiffLens and its baselines: IG against a direct computation and its completeness, the edit's algebra, the
calibration solver, per-sample class draws, configs, and whole fits on a tiny random UNet (finding contents,
identity = bit-identical, save/load, the random control sharing the SAE)."""
from __future__ import annotations

import pytest
import torch

from vismech.datasets.bias import BiasFitData, BiasItems, Sampling, shares, world_fit_data
from vismech.edit import NoEdit
from vismech.errors import VismechError
from vismech.finding import Finding
from vismech.method import build_method
from vismech.methods.bias_baselines import HDirection, PromptAugmentation, RandomLatents, mean_differences
from vismech.methods.difflens import ClassDraw, DiffLens, LatentEdit, Probes, Window, balanced, interpolate_pi, \
    fixed_class, latent_ig, pair_classes, rank, score_latents, simplex_lstsq, Trajectories
from vismech.sampling import sample
from vismech.methods.sae import TopKSAE, from_tokens, to_tokens
from vismech.subject import DiffusionSubject, unet_sites


def random_sae(d: int = 3, n: int = 6, k: int = 2, seed: int = 0) -> TopKSAE:
    sae = TopKSAE(d, n, k).init_from(torch.randn(32, d, generator=torch.Generator().manual_seed(seed)),
                                     torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        sae.b_enc.fill_(0.3)  # so most latents are active and IG has something to spread over
    return sae.eval().requires_grad_(False)


def random_probes(steps: int, k: int, d: int, seed: int = 0) -> Probes:
    gen = torch.Generator().manual_seed(seed)
    return Probes(torch.randn(steps, k, d, generator=gen), torch.randn(steps, k, generator=gen))


def objective(sae, probes, step, h_shape, s, y, temperature):
    """F(s) = softmax(probe_step(decode(s)) / T)[y] for one sample's code s (positions, latents)."""
    h = from_tokens(sae.decode(s), (1, *h_shape), "position")
    return (probes.logits(h.flatten(1), step) / temperature).softmax(-1)[0, y]


def test_ig_equals_a_direct_left_riemann_sum_per_sample():
    sae, probes = random_sae(), random_probes(2, 3, 3 * 2 * 2)
    h = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([2, 0])
    got = latent_ig(sae, probes, 1, h, y, temperature=2.0, points=4, layout="position")
    for b in range(2):
        z = sae.encode(to_tokens(h[b:b + 1]))
        grads = []
        for j in range(4):  # alpha = 0, 1/4, 2/4, 3/4: the left Riemann sum
            s = (j / 4 * z).requires_grad_(True)
            (g,) = torch.autograd.grad(objective(sae, probes, 1, h.shape[1:], s, int(y[b]), 2.0), s)
            grads.append(g)
        torch.testing.assert_close(got[b], z * torch.stack(grads).mean(0), atol=1e-6, rtol=1e-5)


def test_ig_is_complete_with_many_points():
    """Sum of IG over latents and positions -> F(z) - F(0) as m grows (baseline code 0, i.e. h = b_dec)."""
    sae, probes = random_sae(), random_probes(1, 3, 12)
    h = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(6))
    ig = latent_ig(sae, probes, 0, h, torch.tensor([1]), temperature=1.0, points=4000, layout="position")
    z = sae.encode(to_tokens(h))
    gap = objective(sae, probes, 0, h.shape[1:], z, 1, 1.0) - objective(sae, probes, 0, h.shape[1:], 0 * z, 1, 1.0)
    assert float(ig.sum()) == pytest.approx(float(gap), abs=2e-4)
    assert abs(float(gap)) > 1e-2


def test_scores_sum_ig_per_predicted_class():
    sae, probes = random_sae(), random_probes(3, 3, 12)
    h = torch.randn(5, 3, 3, 2, 2, generator=torch.Generator().manual_seed(7))  # (N, T, C, H, W)
    traj = Trajectories(list(range(5)), h, torch.zeros(5, dtype=torch.long), 0)
    scores = score_latents(sae, probes, traj, [1, 2], 3, samples=4, temperature=1.0, points=3, layout="position",
                           chunk=3)
    want = torch.zeros(3, 6, dtype=torch.float64)
    for step in (1, 2):
        y = probes.logits(h[:4, step].flatten(1), step).argmax(-1)
        ig = latent_ig(sae, probes, step, h[:4, step], y, 1.0, 3, "position").sum(1).double()
        want.index_add_(0, y, ig)
    torch.testing.assert_close(scores, want)


def test_rank_is_descending_with_stable_ties():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0], [0.0, -1.0, 5.0, 0.0]])
    assert rank(scores, 3).tolist() == [[1, 2, 3], [2, 0, 3]]


def test_latent_edit_moves_only_the_class_latents_and_keeps_the_reconstruction_error(tiny):
    sae = random_sae(d=64, n=128, k=8)
    features = torch.tensor([[0, 1, 2], [5, 6, 7]])
    h = torch.randn(2, 64, 2, 2, generator=torch.Generator().manual_seed(8))
    classes = torch.tensor([1, 0])
    for mode in ("scale", "add"):
        edit = LatentEdit(tiny, sae, features, 0.7, mode, "position", None, Window(1, 0))
        moved = edit.delta(h, classes, step=3)
        z = sae.encode(to_tokens(h))
        mask = torch.zeros(8, 128)
        mask[:4, [5, 6, 7]] = 1  # tokens of image 0 (class 1)
        mask[4:, [0, 1, 2]] = 1
        dz = 0.7 * (z * mask if mode == "scale" else mask)
        # h' - h = W_dec (z' - z): no bias, no second TopK, the SAE's error h - h_hat untouched
        torch.testing.assert_close(moved, from_tokens(dz @ sae.W_dec.T, h.shape), atol=1e-6, rtol=1e-5)


def test_simplex_least_squares_by_hand():
    eye = torch.eye(3, dtype=torch.float64)
    # q outside the simplex: the nearest point of the simplex to (1, 1, 0) is (1/2, 1/2, 0)
    torch.testing.assert_close(simplex_lstsq(eye, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)),
                               torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    # two identical columns and one far away: q = that column is met with one column (the fewest)
    m = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert simplex_lstsq(m, torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist() == [1.0, 0.0, 0.0]


def test_simplex_least_squares_recovers_a_mixture_and_matches_nnls():
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(5, 5, generator=gen, dtype=torch.float64)
    m = m / m.sum(0)  # columns are distributions
    pi = torch.tensor([0.0, 0.5, 0.2, 0.3, 0.0], dtype=torch.float64)
    torch.testing.assert_close(simplex_lstsq(m, m @ pi), pi, atol=1e-9, rtol=0)
    scipy = pytest.importorskip("scipy.optimize")
    q = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0], dtype=torch.float64)  # usually outside the columns' hull
    weight = 1e3  # NNLS with a heavily weighted sum-to-one row: the same problem, solved another way
    a = torch.cat([m, weight * torch.ones(1, 5, dtype=torch.float64)]).numpy()
    ref = torch.from_numpy(scipy.nnls(a, torch.cat([q, torch.tensor([weight], dtype=torch.float64)]).numpy())[0])
    ours = simplex_lstsq(m, q)
    assert float((m @ ours - q).norm()) <= float((m @ ref - q).norm()) + 1e-6
    torch.testing.assert_close(ours, ref, atol=2e-3, rtol=0)  # NNLS's sum row is soft


def test_pi_interpolates_between_calibrated_strengths():
    strengths = torch.tensor([1.0, 3.0], dtype=torch.float64)
    pis = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert interpolate_pi(strengths, pis, 2.5).tolist() == [0.25, 0.75]
    assert interpolate_pi(strengths, pis, 0.5).tolist() == [1.0, 0.0]
    assert interpolate_pi(strengths, pis, 9.0).tolist() == [0.0, 1.0]


def test_class_draws_depend_on_the_id_only_and_follow_pi():
    pi = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # (unedited, class 0, 1, 2)
    draw = ClassDraw(DiffLens(seed=3), pi)
    ids = torch.arange(4000)
    classes = draw(ids)
    assert torch.equal(ClassDraw(DiffLens(seed=3), pi)(ids.flip(0)), classes.flip(0))  # order and batch free
    assert not torch.equal(ClassDraw(DiffLens(seed=4), pi)(ids), classes)  # keyed by the run seed
    freq = shares(classes, 3)  # classes 0..2, then unedited (-1)
    want = torch.tensor([0.2, 0.3, 0.4, 0.1], dtype=torch.float64)
    assert ((freq - want).abs() <= 3 * (want * (1 - want) / 4000).sqrt()).all(), freq


def test_balanced_keeps_the_same_number_per_class():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 5 + [-1] * 4)
    keep = balanced(labels, 100, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[keep]).tolist() == [3, 3, 3]
    with pytest.raises(VismechError, match="too few"):
        balanced(torch.tensor([0, 0, 1]), 10, 2, torch.Generator())


def test_configs_and_strengths_are_checked():
    with pytest.raises(VismechError, match="mode must be one of scale, add"):
        DiffLens({"mode": "boost"})
    with pytest.raises(VismechError, match="features_per_class"):
        DiffLens({"features_per_class": 200})
    with pytest.raises(VismechError, match="unknown config key"):
        DiffLens({"beta": 2})
    with pytest.raises(VismechError, match=">= -1"):
        DiffLens().check_strength(-2.0)
    assert DiffLens({"mode": "add"}).check_strength(-2.0) == -2.0
    with pytest.raises(VismechError, match="direction must be one of"):
        HDirection({"direction": "pca"})
    with pytest.raises(VismechError, match="does not support task"):
        build_method("difflens", task="neuron_path")
    with pytest.raises(VismechError, match="target must be 4"):
        BiasFitData(target=(0.5, 0.5))


def test_data_digests_follow_content():
    a, b = world_fit_data(), world_fit_data(fit_ids=(0, 512))
    assert a.digest() == world_fit_data().digest() != b.digest()
    assert world_fit_data(conditional=True).prompts[7] == "a sneaker"
    assert world_fit_data(conditional=True).attribute_prompts[7][2] == "a blue sneaker"
    items = BiasItems((200_000, 200_004), prompts=("a bag", "a coat"))
    assert [items[i]["prompt"] for i in range(4)] == ["a bag", "a coat", "a bag", "a coat"]
    assert items.digest() != BiasItems((200_000, 200_004)).digest()


# --- whole fits on a tiny random UNet ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 64),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                           up_block_types=("UpBlock2D",) * 2, norm_num_groups=8)
    return DiffusionSubject("tiny", unet.eval(), DDPMScheduler(clip_sample=True), unet_sites(unet), image_size=8)


TINY_DATA = BiasFitData(fit_ids=(0, 96), calibration_ids=(100_000, 100_016), sampling=Sampling(steps=4, eta=1.0))
TINY_CONFIG = {"sae_steps": 60, "sae_batch_tokens": 256, "sae_k": 4, "sae_expansion": 2, "features_per_class": 4,
               "ranked_per_class": 8, "probe_epochs": 2, "ig_last_steps": 2, "ig_samples": 32, "ig_points": 4,
               "calibration_strengths": [1.0, 4.0], "drift_samples": 4, "mode": "add"}


@pytest.fixture(scope="module")
def fitted(tiny):
    return DiffLens(TINY_CONFIG, seed=0).fit(tiny, TINY_DATA)


def generate(subject, edit, ids=range(200_000, 200_006)):
    ids = list(ids)
    return sample(subject, ids, TINY_DATA.seeds(ids), edit=edit, sampling=TINY_DATA.sampling)


def test_fit_holds_the_sae_probes_ranked_latents_and_calibration(fitted):
    t, meta = fitted.tensors, fitted.meta
    assert t["sae.W_enc"].shape == (128, 64) and t["sae.W_dec"].shape == (64, 128)
    assert t["probe.weight"].shape == (4, 4, 64 * 4 * 4)  # one head per step on the flattened 64 x 4 x 4 h
    assert t["latents.ranked"].shape == (4, 8) and t["latents.scores"].shape == (4, 128)
    assert torch.equal(t["latents.ranked"], rank(t["latents.scores"], 8))
    assert t["calibration.M"].shape == (2, 5, 5)  # strengths x (4 classes + unlabelled) x (unedited + 4 classes)
    torch.testing.assert_close(t["calibration.M"].sum(1), torch.ones(2, 5, dtype=torch.float64))
    pi = t["calibration.pi"]
    assert (pi >= 0).all() and torch.allclose(pi.sum(1), torch.ones(2, dtype=torch.float64))
    assert meta["calibration"]["strength"] in (1.0, 4.0)
    assert {"fvu", "l0", "dead_fraction", "drift"} <= set(meta["sae"]) and meta["sae"]["l0"] <= 4
    assert meta["ig"]["steps"] == [2, 3] and len(meta["probes"]["held_out_accuracy"]) == 4


def test_identity_strength_is_bit_identical_and_other_strengths_edit(tiny, fitted):
    method = DiffLens(TINY_CONFIG, seed=0)
    assert isinstance(method.edit(tiny, fitted, 0.0), NoEdit)
    plain = generate(tiny, None)
    assert torch.equal(generate(tiny, method.edit(tiny, fitted, 0.0)).images, plain.images)
    # every sample boosted towards class 0 (the calibrated mixture may leave a few samples all unedited)
    edited = generate(tiny, method.make_edit(tiny, fitted, 4.0, fixed_class(0), method.window(tiny)))
    assert edited.decoder_rows > 0 and not torch.equal(edited.images, plain.images)


def test_a_saved_finding_loads_and_edits_the_same(tiny, fitted, tmp_path):
    method = DiffLens(TINY_CONFIG, seed=0)
    back = Finding.load(fitted.save(tmp_path / "finding"))
    assert back.digest() == fitted.digest()
    torch.testing.assert_close(generate(tiny, method.edit(tiny, back, 2.0)).images,
                               generate(tiny, method.edit(tiny, fitted, 2.0)).images, atol=0, rtol=0)


def test_random_control_shares_the_sae_and_draws_other_latents(tiny, fitted):
    control = RandomLatents({**TINY_CONFIG, "calibration_strengths": []}, seed=0)
    found = control.fit(tiny, TINY_DATA)
    assert control.control and torch.equal(found.tensors["sae.W_dec"], fitted.tensors["sae.W_dec"])
    assert found.tensors["latents.ranked"].shape == (4, 8)
    assert not torch.equal(found.tensors["latents.ranked"], fitted.tensors["latents.ranked"])
    assert not torch.equal(generate(tiny, control.edit(tiny, found, 4.0)).images, generate(tiny, None).images)


def test_a_sweeps_control_reuses_trajectories_and_sae_and_counts_their_passes(tiny, fitted):
    """In one process the random-latent control fits on difflens's trajectories and SAE instead of sampling and
    training again; its finding and its counted passes are those of a fresh fit."""
    from vismech.methods import difflens

    config = {**TINY_CONFIG, "calibration_strengths": [], "drift_samples": 0}

    def fit_control():
        before = tiny.cost.snapshot()
        found = RandomLatents(config, seed=0).fit(tiny, TINY_DATA)
        return found, {k: v - before[k] for k, v in tiny.cost.snapshot().items()}

    difflens._shared.clear()
    fresh, fresh_passes = fit_control()
    assert len(difflens._shared) == 2  # the trajectories and the SAE
    reused, reused_passes = fit_control()
    assert reused_passes == fresh_passes and fresh_passes["forward_passes"] > 0
    assert reused.digest() == fresh.digest()
    assert torch.equal(reused.tensors["sae.W_dec"], fitted.tensors["sae.W_dec"])  # difflens's SAE, same config


def test_h_direction_is_the_class_mean_difference(tiny):
    h = torch.randn(6, 2, 1, 1, 2, generator=torch.Generator().manual_seed(0))  # (N, T, C, H, W)
    labels = torch.tensor([0, 0, 1, 1, 1, -1])
    d = mean_differences(h, labels, 2)
    torch.testing.assert_close(d[:, 0], h[:2].flatten(2).mean(0) - h[2:5].flatten(2).mean(0))
    method = HDirection({"calibration_strengths": [], "direction": "probe", "probe_epochs": 1}, seed=0)
    found = method.fit(tiny, TINY_DATA)
    assert found.tensors["directions"].shape == (4, 4, 1024)
    assert not torch.equal(generate(tiny, method.edit(tiny, found, 1.0)).images, generate(tiny, None).images)


def test_prompt_augmentation_needs_a_conditional_subject(tiny):
    with pytest.raises(VismechError, match="conditional"):
        PromptAugmentation().fit(tiny, TINY_DATA)


# --- conditional: sd_world ---------------------------------------------------------------------------------------

SD_DATA = world_fit_data(conditional=True, fit_ids=(0, 16), calibration_ids=(100_000, 100_004),
                         sampling=Sampling(steps=4, eta=0.0, guidance_scale=4.0))


@pytest.fixture(scope="module")
def sd():
    from vismech.zoo import sd_world

    return sd_world.subject()


def test_pair_classes_are_balanced_and_counterfactual():
    named, other = pair_classes(list(range(24)), 4)
    assert torch.bincount(named).tolist() == [6] * 4
    assert (named != other).all() and torch.bincount(other).tolist() == [6] * 4


def test_conditional_fit_names_classes_and_edits_the_conditional_half(sd):
    config = {**TINY_CONFIG, "calibration_strengths": [], "drift_samples": 0, "temperature": 1000.0}
    method = DiffLens(config, seed=0)
    found = method.fit(sd, SD_DATA)
    meta = found.meta
    assert meta["fit_labels"] == [0.25, 0.25, 0.25, 0.25, 0.0] and meta["fit_labels_are"] == "named in the prompt"
    assert meta["ig"]["baseline"].startswith("counterfactual")
    assert meta["sae"]["tokens"] == 1 * 4 * 2 * 16  # 1 held-out sample x 4 steps x both CFG halves x 16 positions
    assert method.window(sd) == Window(1, 1)  # the spec's SD steps: not the first, not the last
    ids = list(range(200_000, 200_004))
    run = lambda edit: sample(sd, ids, SD_DATA.seeds(ids), prompts=SD_DATA.prompts_for(ids), edit=edit,  # noqa: E731
                              sampling=SD_DATA.sampling)
    edited = run(method.edit(sd, found, 4.0))
    assert edited.decoder_rows == 4 * 2  # 4 conditional rows at the 2 edited steps
    assert not torch.equal(edited.images, run(None).images)


def test_prompt_augmentation_names_classes_drawn_from_the_target(sd):
    data = world_fit_data(conditional=True, target=(0.0, 1.0, 0.0, 0.0), sampling=SD_DATA.sampling)
    method = PromptAugmentation(seed=0)
    found = method.fit(sd, data)
    ids = [200_000, 200_007]
    prompts = data.prompts_for(ids)
    assert prompts == ["a t-shirt", "a sneaker"]
    def run(edit, p):
        return sample(sd, ids, data.seeds(ids), prompts=p, edit=edit, sampling=data.sampling).images

    assert torch.equal(run(method.edit(sd, found, 1.0), prompts), run(None, ["a green t-shirt", "a green sneaker"]))
    assert isinstance(method.edit(sd, found, 0.0), NoEdit)


# --- reference switches (issue 18): set-to-beta, the decoder-bias write-back, the IG window, per-class beta/tau ---

def edit_parts(tiny, **options):
    sae = random_sae(d=64, n=128, k=8)
    features = torch.tensor([[0, 1, 2], [5, 6, 7]])
    h = torch.randn(2, 64, 2, 2, generator=torch.Generator().manual_seed(8))
    z = sae.encode(to_tokens(h))
    mask = torch.zeros(8, 128)
    mask[:4, [5, 6, 7]] = 1  # tokens of image 0 (class 1)
    mask[4:, [0, 1, 2]] = 1
    return sae, features, h, z, mask


def test_add_rule_set_makes_the_latent_beta_where_beta_is_positive(tiny):
    sae, features, h, z, mask = edit_parts(tiny)
    classes = torch.tensor([1, 0])

    def delta(rule, s):
        edit = LatentEdit(tiny, sae, features, s, "add", "position", None, Window(1, 0), add_rule=rule)
        return edit.delta(h, classes, 3)

    s = 0.7
    for rule, dz in (("set", (s - z) * mask), ("add", s * mask)):
        torch.testing.assert_close(delta(rule, s), from_tokens(dz @ sae.W_dec.T, h.shape), atol=1e-6, rtol=1e-5)
    assert ((z * mask) != 0).any()  # active class latents: setting and adding differ
    assert not torch.allclose(delta("set", s), delta("add", s), atol=1e-3)
    for s in (0.0, -0.5):  # no positive beta: both add
        assert torch.equal(delta("set", s), delta("add", s))


def test_bias_write_back_adds_b_dec_to_every_sample_so_strength_zero_is_not_the_identity(tiny, fitted):
    sae, features, h, z, mask = edit_parts(tiny)
    with torch.no_grad():
        sae.b_dec.copy_(torch.linspace(-1, 1, 64))
    classes_of = lambda ids: torch.tensor([-1 if int(i) == 0 else 0 for i in ids])  # noqa: E731
    ids = torch.tensor([0, 1])
    for s in (0.0, 0.7):
        plain = LatentEdit(tiny, sae, features, s, "scale", "position", classes_of, Window(1, 0))
        reference = LatentEdit(tiny, sae, features, s, "scale", "position", classes_of, Window(1, 0),
                               write_back="delta_and_bias")
        assert plain.selected(ids, 2, 4).tolist() == [False, True]  # the unedited sample is left alone ...
        assert reference.selected(ids, 2, 4).tolist() == [True, True]  # ... unless the bias goes everywhere
        assert reference.selected(ids, 0, 4).tolist() == [False, False]  # outside the window nothing
        bias = sae.b_dec.view(1, 64, 1, 1)
        torch.testing.assert_close(reference.shift(h, ids, 2, 4), plain.shift(h, ids, 2, 4) + bias)
        torch.testing.assert_close(plain.shift(h, ids, 2, 4)[0], h[0])
    method = DiffLens({**TINY_CONFIG, "write_back": "delta_and_bias"}, seed=0)
    assert not isinstance(method.edit(tiny, fitted, 0.0), NoEdit)
    assert not torch.equal(generate(tiny, method.edit(tiny, fitted, 0.0)).images, generate(tiny, None).images)


def test_ig_step_window_is_explicit():
    last48 = DiffLens({"ig_last_steps": 48}).config.ig_step_list(50)
    steps_1_48 = DiffLens({"ig_steps": [1, 48]}).config.ig_step_list(50)
    assert last48 == list(range(2, 50)) and steps_1_48 == list(range(1, 49)) and last48 != steps_1_48
    assert DiffLens({"ig_steps": [2, 49]}).config.ig_step_list(50) == last48
    with pytest.raises(VismechError, match=r"ig_steps \[1, 48\] must lie within the sampler's steps 0..3"):
        DiffLens({"ig_steps": [1, 48]}).config.ig_step_list(4)


def test_per_class_strengths_and_feature_counts(tiny):
    sae, features, h, z, mask = edit_parts(tiny)
    classes = torch.tensor([1, 0])
    uniform = LatentEdit(tiny, sae, features, 0.7, "scale", "position", None, Window(1, 0))
    same = LatentEdit(tiny, sae, features, 0.7, "scale", "position", None, Window(1, 0), counts=[3, 3],
                      class_scale=torch.ones(2))
    assert torch.equal(uniform.delta(h, classes, 3), same.delta(h, classes, 3))  # all ones: one strength
    # released-style settings: class 0 at 2 x the strength on its first latent only, class 1 not edited (tau 0)
    tuned = LatentEdit(tiny, sae, features, 0.7, "scale", "position", None, Window(1, 0), counts=[1, 0],
                       class_scale=torch.tensor([2.0, 0.0]))
    want = torch.zeros(8, 128)
    want[4:, 0] = 1.4 * z[4:, 0]
    torch.testing.assert_close(tuned.delta(h, classes, 3), from_tokens(want @ sae.W_dec.T, h.shape), atol=1e-6,
                               rtol=1e-5)
    with pytest.raises(VismechError, match=r"class_strengths must give one value per class \(4\), got \[1.0, 2.0\]"):
        DiffLens({"class_strengths": [1.0, 2.0]}).config.per_class(4)


@pytest.mark.parametrize("config, match", [
    ({"add_rule": "replace"}, "add_rule must be one of add, set, got 'replace'"),
    ({"write_back": "bias"}, "write_back must be one of delta, delta_and_bias, got 'bias'"),
    ({"ig_steps": [5, 2]}, r"ig_steps must be \[first, last\] with 0 <= first <= last, or null; got \[5, 2\]"),
    ({"class_features": [10, 200]}, r"class_features must each be in \[0, ranked_per_class = 100\]"),
])
def test_reference_switches_are_checked(config, match):
    with pytest.raises(VismechError, match=match):
        DiffLens(config)
