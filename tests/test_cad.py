"""CAD-Erase and CAD-Amplify: scores against an independent weight x gradient computation, the single trajectory
against the reference's restarts, the selection rule, exact edits, config errors, and the mini-model claim that
erasing a garment class removes it while the others stay and a random ablation of the same count does not."""
from __future__ import annotations

import warnings

import pytest
import torch

from vismech.datasets.concepts import ConceptData, world_concept
from vismech.errors import VismechError
from vismech.finding import Finding
from tiny_sd import tiny_subject
from vismech.methods.cad import CADAmplify, CADErase, only_requires_grad, pick, selection_masks
from vismech.methods.concept_baselines import RandomWeights
from vismech.registry import METHODS
from vismech.subject import weights_digest

STEPS = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on shared cores: one intra-op thread is faster and keeps sums in one order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return tiny_subject(0)


@pytest.fixture(scope="module")
def data():
    return ConceptData("a sneaker", seeds=(3, 4), steps=STEPS, guidance_scale=3.0)


@pytest.fixture(scope="module")
def erase_finding(tiny, data):
    return CADErase().fit(tiny, data)


def ff_weights(subject) -> dict[str, torch.Tensor]:
    return {s.name: subject.parameter(s) for s in subject.sites_of("ff.")}


def close(ours: dict, theirs: dict, rtol: float = 1e-4) -> None:
    assert ours.keys() == theirs.keys()
    for site in ours:
        scale = float(theirs[site].abs().max())
        assert scale > 0, site
        assert float((ours[site] - theirs[site]).abs().max()) <= rtol * scale, site


# --- independent computations of the definitions (spec sections 1, 3, 4) -------------------------------------------

def pipeline_trajectory(subject, data) -> list[torch.Tensor]:
    """x_0 .. x_steps of every seed, from diffusers' own StableDiffusionPipeline loop (eta 0 DDIM, CFG)."""
    pipe = subject.pipeline
    seen = []

    def record(pipeline, step, t, kwargs):
        seen.append(kwargs["latents"].clone())
        return {}

    side = subject.image_size // pipe.vae_scale_factor
    x_T = torch.cat([torch.randn((1, 4, side, side), generator=torch.Generator().manual_seed(s)) for s in data.seeds])
    pipe([data.concept] * len(data.seeds), height=subject.image_size, width=subject.image_size, latents=x_T.clone(),
         num_inference_steps=data.steps, guidance_scale=data.guidance_scale, eta=0.0, output_type="latent",
         callback_on_step_end=record)
    return [x_T] + seen


def full_grad_scores(subject, loss_terms) -> dict[str, torch.Tensor]:
    """w * dJ/dw with every UNet parameter requiring grad and plain .backward() (the reference's way)."""
    unet = subject.unet
    for p in unet.parameters():
        p.requires_grad_(True)
        p.grad = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # the cost meter's; expected
        for term in loss_terms():
            term.backward()
    scores = {site: (w.detach() * w.grad).clone() for site, w in ff_weights(subject).items()}
    for p in unet.parameters():
        p.grad = None
    return scores


def direct_erase_scores(subject, data, pairing: str) -> dict[str, torch.Tensor]:
    pipe, unet = subject.pipeline, subject.unet
    xs = pipeline_trajectory(subject, data)
    n = len(data.seeds)
    with torch.no_grad():
        context = torch.cat([pipe.encode_prompt([data.concept] * n, "cpu", 1, False)[0],
                             pipe.encode_prompt([data.base] * n, "cpu", 1, False)[0]])
    pipe.scheduler.set_timesteps(data.steps)
    timesteps = pipe.scheduler.timesteps

    def terms():
        for k, t in enumerate(timesteps):
            x = xs[k] if pairing == "corrected" else xs[k + 1]
            eps_c, eps_b = unet(torch.cat([x, x]), t, encoder_hidden_states=context, return_dict=False)[0].chunk(2)
            yield ((eps_c - eps_b.detach()) ** 2).sum()

    return full_grad_scores(subject, terms)


def direct_amplify_scores(subject, data, method) -> dict[str, torch.Tensor]:
    """alpha of J = -L_c: fresh noise per (image, timestep) drawn from the method's generator in schedule order."""
    pipe, unet = subject.pipeline, subject.unet
    with torch.no_grad():
        z0 = pipe.vae.encode(data.images * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
        cond = pipe.encode_prompt([data.concept] * len(z0), "cpu", 1, False)[0]
    pipe.scheduler.set_timesteps(data.steps)
    generator = method.generator("amplify-noise")

    def terms():
        for t in pipe.scheduler.timesteps:
            noise = torch.randn(z0.shape, generator=generator)
            x_t = pipe.scheduler.add_noise(z0, noise, t.reshape(1))
            eps = unet(x_t, t, encoder_hidden_states=cond, return_dict=False)[0]
            loss = sum(((noise[i] - eps[i]) ** 2).mean() for i in range(len(z0)))
            yield -loss

    return full_grad_scores(subject, terms)


def alpha(finding: Finding) -> dict[str, torch.Tensor]:
    return {name[len("alpha."):]: t for name, t in finding.tensors.items() if name.startswith("alpha.")}


# --- scores ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pairing", ["corrected", "reference"])
def test_erase_scores_are_weight_times_gradient(tiny, data, pairing):
    finding = CADErase({"pairing": pairing}).fit(tiny, data)
    close(alpha(finding), direct_erase_scores(tiny, data, pairing))
    assert all(t.dtype == torch.float32 for t in finding.tensors.values())


def test_amplify_scores_are_weight_times_gradient_of_minus_the_loss(tiny):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    data = ConceptData("a sneaker", steps=STEPS, images=images)
    method = CADAmplify({"batch_size": 2})  # chunks of 2 + 1 images: sums must not depend on the chunking
    finding = method.fit(tiny, data)
    close(alpha(finding), direct_amplify_scores(tiny, data, method))
    assert finding.meta["images"] == 3 and finding.meta["backward_passes"] == 2 * STEPS


def test_amplify_without_images_uses_the_models_own_samples(tiny, data):
    finding = CADAmplify().fit(tiny, data)
    assert finding.meta["images"] == len(data.seeds) and finding.meta["image_source"].startswith("generated")
    # sampling the concept: STEPS CFG forwards, then one forward/backward per timestep
    assert finding.meta["forward_passes"] == 2 * STEPS and finding.meta["backward_passes"] == STEPS


def test_only_the_scored_matrices_require_grad_and_flags_come_back(tiny):
    unet = tiny.unet
    before = [p.requires_grad for p in unet.parameters()]
    scored = list(ff_weights(tiny).values())
    with only_requires_grad(unet, scored):
        assert {id(p) for p in unet.parameters() if p.requires_grad} == {id(p) for p in scored}
    assert [p.requires_grad for p in unet.parameters()] == before


# --- single trajectory vs the reference's restarts ----------------------------------------------------------------

@pytest.mark.parametrize("pairing", ["corrected", "reference"])
def test_single_trajectory_equals_the_reference_restarts(tiny, data, pairing):
    ours = CADErase({"pairing": pairing}).fit(tiny, data)
    reference = CADErase({"pairing": pairing, "procedure": "reference"}).fit(tiny, data)
    close(alpha(ours), alpha(reference), rtol=1e-6)
    assert ours.meta["objective_sum"] == pytest.approx(reference.meta["objective_sum"], rel=1e-6)
    # the reference runs 1 + 2 + ... + T CFG steps (0 + ... + T - 1 with the corrected pairing) plus T gradient
    # forwards; ours T fused forwards (corrected, base "") or T CFG + T gradient forwards
    T = STEPS
    restarts = T * (T + 1) // 2 if pairing == "reference" else T * (T - 1) // 2
    assert reference.meta["forward_passes"] == restarts + T
    assert ours.meta["forward_passes"] == (T if pairing == "corrected" else 2 * T)
    assert ours.meta["backward_passes"] == reference.meta["backward_passes"] == T
    assert ours.meta["fused"] is (pairing == "corrected")


def test_unfused_and_fused_single_trajectories_agree(tiny, data, erase_finding):
    unfused = CADErase({"fuse_cfg": False}).fit(tiny, data)
    close(alpha(unfused), alpha(erase_finding), rtol=1e-6)
    assert unfused.meta["forward_passes"] == 2 * STEPS and not unfused.meta["fused"]


def test_fifty_steps_cost_at_least_seven_times_fewer_unet_evaluations():
    """The counts of the spec's protocol (T = 50), from the formulas the test above checks on the tiny model."""
    T = 50
    reference = T * (T + 1) // 2 + T + T  # forwards + backwards
    ours = T + T
    assert reference / ours >= 7


# --- selection rule and edits ------------------------------------------------------------------------------------

def test_per_row_rule_spares_negative_scores_and_floors_the_count():
    score = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-3.0, -2.0, 1.0, -1.0]])
    assert pick(score, 2, "positive").tolist() == [[True, False, True, False], [False, False, True, False]]
    assert pick(score, 1, "negative").tolist() == [[False, True, False, False], [True, False, False, False]]
    assert pick(score, 1, "both").tolist() == [[True, True, False, False], [True, False, True, False]]
    masks = selection_masks({"w": score}, 0.49, "row", "positive")  # floor(0.49 * 4) = 1 per row
    assert masks["w"].sum(1).tolist() == [1, 1]
    assert not selection_masks({"w": score}, 0.2, "row", "positive")["w"].any()  # floor(0.8) = 0
    flat = selection_masks({"w": score}, 0.25, "matrix", "positive")["w"]  # one ranking: 2 largest overall
    assert flat.tolist() == [[True, False, True, False], [False, False, False, False]]
    both = selection_masks({"a": score, "b": score * 10}, 0.125, "global", "positive")  # 2 of 16 overall
    assert both["a"].sum() == 0 and both["b"].tolist() == flat.tolist()


def synthetic(method, tiny) -> Finding:
    """A finding whose alpha is known: +w on the in-projections, -w on the out-projections."""
    tensors = {}
    for site, w in ff_weights(tiny).items():
        sign = 1 if site.endswith(".in") else -1
        tensors["alpha." + site] = sign * w.detach().abs().float() + 1e-3 * sign
    return method.new_finding(tiny, "concept", tensors=tensors)


def test_erase_zeroes_positive_and_amplify_negative_components(tiny):
    erase, amplify = CADErase(), CADAmplify()
    for method, kept in ((erase, ".out"), (amplify, ".in")):
        ratio = 0.25
        counts = method.zeroed(synthetic(method, tiny), ratio)
        for site, w in ff_weights(tiny).items():
            expected = 0 if site.endswith(kept) else w.shape[0] * int(ratio * w.shape[1])
            assert counts[site] == expected, (method.name, site)
        with method.edit(tiny, synthetic(method, tiny), ratio) as edit:
            assert edit.total == sum(counts.values()) > 0
            for site, w in ff_weights(tiny).items():
                assert int((w == 0).sum()) >= counts[site]


@pytest.mark.parametrize("scope, selection", [("row", "positive"), ("matrix", "negative"), ("global", "positive")])
def test_a_compact_finding_gives_the_same_edits_up_to_its_stored_ratio(tiny, data, scope, selection):
    config = {"scope": scope, "selection": selection}
    dense = CADAmplify(config).fit(tiny, data)
    compact = CADAmplify({**config, "stored_ratio": 0.2}).fit(tiny, data)
    assert not any(name.startswith("alpha.") for name in compact.tensors)
    stored = sum(t.numel() for name, t in compact.tensors.items() if name.startswith("alpha_value."))
    assert 0 < stored < 0.25 * dense.meta["scored_weights"]
    method = CADAmplify(config)
    for ratio in (0.0, 0.05, 0.1, 0.2):
        assert method.zeroed(compact, ratio) == method.zeroed(dense, ratio), ratio
        for site, mask in method.masks(compact, ratio).items():
            assert torch.equal(mask, method.masks(dense, ratio)[site]), (ratio, site)
    with pytest.raises(VismechError, match="stores only the top 0.2 of its scores.*ratio 0.3"):
        method.edit(tiny, compact, 0.3)
    other = "row" if scope != "row" else "matrix"
    with pytest.raises(VismechError, match=f"scope '{other}'.*needs a refit"):
        CADAmplify({"scope": other, "selection": selection}).zeroed(compact, 0.1)


def unet_output(subject) -> torch.Tensor:
    pipe = subject.pipeline
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    cond = pipe.encode_prompt(["a sneaker", ""], "cpu", 1, False)[0]
    with torch.no_grad():
        return subject.unet(x, torch.tensor(500), encoder_hidden_states=cond, return_dict=False)[0]


def test_strength_zero_is_bit_identical_and_edits_restore_bit_exactly(tiny, erase_finding):
    method, digest, clean = CADErase(), weights_digest(tiny.unet), unet_output(tiny)
    with method.edit(tiny, erase_finding, 0.0) as edit:
        assert edit.total == 0
        assert torch.equal(unet_output(tiny), clean)
    with method.edit(tiny, erase_finding, 0.3) as edit:
        assert edit.total > 0 and not torch.equal(unet_output(tiny), clean)
    assert weights_digest(tiny.unet) == digest and torch.equal(unet_output(tiny), clean)
    with pytest.raises(RuntimeError, match="boom"):
        with method.edit(tiny, erase_finding, 0.3):
            raise RuntimeError("boom")
    assert weights_digest(tiny.unet) == digest


def test_finding_round_trips_and_records_cost(tiny, erase_finding, tmp_path):
    loaded = Finding.load(erase_finding.save(tmp_path / "cad"))
    assert loaded.digest() == erase_finding.digest()
    meta = loaded.meta
    assert meta["forward_passes"] == STEPS and meta["backward_passes"] == STEPS
    assert meta["positive"] > 0 and meta["negative"] > 0
    scored = sum(w.numel() for w in ff_weights(tiny).values())
    assert meta["positive"] + meta["negative"] <= meta["scored_weights"] == scored
    assert CADErase().edit(tiny, loaded, 0.1).zeroed == CADErase().edit(tiny, erase_finding, 0.1).zeroed


# --- errors ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, match", [
    ({"procedure": "restart"}, "procedure must be one of single, reference; got 'restart'"),
    ({"pairing": "off_by_one"}, "pairing must be one of corrected, reference; got 'off_by_one'"),
    ({"scope": "flatten"}, "scope must be one of row, matrix, global; got 'flatten'"),
    ({"selection": "top"}, "selection must be one of positive, negative, both; got 'top'"),
    ({"sites": ""}, "sites must be a non-empty"),
    ({"stored_ratio": 0.0}, r"stored_ratio must be in \(0, 1\], got 0"),
    ({"stored_ratio": 0.1, "selection": "both"}, "stored_ratio < 1 needs selection 'positive' or 'negative'"),
    ({"score_dtype": "fp16"}, "score_dtype must be one of fp32, model; got 'fp16'"),
])
def test_bad_erase_config_names_the_value(config, match):
    with pytest.raises(VismechError, match=match):
        CADErase(config)


def test_bad_values_name_the_value(tiny, erase_finding):
    with pytest.raises(VismechError, match="batch_size must be >= 1, got 0"):
        CADAmplify({"batch_size": 0})
    for key, value, allowed in (("latent", "mode", "mean, sample"), ("pixel_range", "0-255", "signed, unit"),
                                ("generated_images", "png", "latent, pixels")):
        with pytest.raises(VismechError, match=f"{key} must be one of {allowed}; got '{value}'"):
            CADAmplify({key: value})
    with pytest.raises(VismechError, match=r"strength of method 'cad_erase' must be in \[0, 1\], got 1.5"):
        CADErase().edit(tiny, erase_finding, 1.5)
    with pytest.raises(VismechError, match="made by method 'cad_erase', not 'cad_amplify'"):
        CADAmplify().edit(tiny, erase_finding, 0.1)
    with pytest.raises(VismechError, match="no weight sites starting with 'attn.'"):
        CADErase({"sites": "attn."}).fit(tiny, ConceptData("a bag", steps=1))
    with pytest.raises(VismechError, match="fits on vismech.datasets.concepts.ConceptData, got str"):
        CADErase().fit(tiny, "a bag")
    for kwargs, match in (({"seeds": ()}, "seeds must be a non-empty list"),
                          ({"steps": 0}, "steps must be an integer >= 1, got 0"),
                          ({"guidance_scale": 0.5}, "guidance_scale must be a finite number >= 1, got 0.5"),
                          ({"images": torch.ones(2, 3, 4, 4) * 2}, r"pixels in \[0, 1\]")):
        with pytest.raises(VismechError, match=match):
            ConceptData("a bag", **kwargs)
    with pytest.raises(VismechError, match="concept must be a non-empty prompt"):
        ConceptData(" ")


def test_methods_are_registered_for_the_concept_task():
    assert METHODS.get("cad_erase") is CADErase and METHODS.get("cad_amplify") is CADAmplify
    assert CADErase.tasks == ("concept",) and CADErase.identity_strength == 0.0


def test_concept_data_digest_covers_its_content():
    base = ConceptData("a bag", seeds=(1, 2))
    assert base.digest() == ConceptData("a bag", seeds=(1, 2)).digest()
    images = torch.zeros(1, 3, 4, 4)
    changed = [ConceptData("a bag", seeds=(1, 3)), ConceptData("a bag", seeds=(1, 2), base="a sneaker"),
               ConceptData("a bag", seeds=(1, 2), steps=49), ConceptData("a bag", seeds=(1, 2), images=images)]
    digests = {base.digest()} | {d.digest() for d in changed}
    assert len(digests) == 5
    brighter = ConceptData("a bag", seeds=(1, 2), images=images + 0.5)
    assert brighter.digest() != changed[-1].digest()


# --- the mini model: erase removes the class and keeps the others; amplify strengthens it ----------------------------
# Measured with these settings (one thread): erasing 'sandal' at ratio 0.04 takes its judge accuracy from 1.00 to
# 0.25 while the other nine classes lose 1.4 points on average; a random ablation of the same 7,904 weights leaves
# sandals at 1.00. Amplifying 'pullover' (64 train images, 50 timesteps) at ratio 0.01 raises pullovers' accuracy
# from 0.38 to 0.75 (judge probability 0.36 -> 0.53) while the others lose 1.4 points.

CLASS_SEEDS = 8
EVAL_STEPS = 15


@pytest.fixture(scope="module")
def mini():
    from vismech.zoo import judge_world, sd_world

    return sd_world.subject(), judge_world.load()


def class_scores(mini) -> tuple[torch.Tensor, torch.Tensor]:
    """Per garment class, over CLASS_SEEDS images of 'a <class>': the judge's accuracy and mean true-class prob."""
    from vismech.datasets.world import CLASSES
    from vismech.zoo import sd_world
    from vismech.datasets.world import describe

    subject, judge = mini
    prompts = [describe(c) for c in CLASSES for _ in range(CLASS_SEEDS)]
    seeds = [100 + i % CLASS_SEEDS for i in range(len(prompts))]
    labels = torch.arange(len(CLASSES)).repeat_interleave(CLASS_SEEDS)
    probs = judge.probs(sd_world.generate(subject.pipeline, prompts, seeds, steps=EVAL_STEPS))["label"]
    correct = (probs.argmax(-1) == labels).float().view(len(CLASSES), CLASS_SEEDS).mean(1)
    return correct, probs.gather(1, labels[:, None]).view(len(CLASSES), CLASS_SEEDS).mean(1)


def edited_scores(mini, method, finding, ratio):
    with method.edit(mini[0], finding, ratio) as edit:
        return class_scores(mini), edit.total


def test_mini_erase_removes_the_class_keeps_the_others_and_beats_random(mini):
    from vismech.datasets.world import CLASSES

    target, ratio = CLASSES.index("sandal"), 0.04
    others = [c for c in range(len(CLASSES)) if c != target]
    (clean, _) = class_scores(mini)
    data = world_concept("sandal", seeds=tuple(range(16)), steps=25, guidance_scale=3.0)
    cad = CADErase()
    (erased, _), count = edited_scores(mini, cad, cad.fit(mini[0], data), ratio)
    random = RandomWeights(seed=0)
    (randomised, _), random_count = edited_scores(mini, random, random.fit(mini[0], data), ratio)
    assert count == random_count  # every top-ranked score is positive here: the same weights per row
    drop, random_drop = clean - erased, clean - randomised
    assert clean[target] == 1.0 and drop[target] >= 0.5, erased.tolist()
    assert drop[others].mean() <= 0.05, drop.tolist()
    assert random_drop[target] <= 0.125 and drop[target] >= 4 * max(random_drop[target], 0.125)


def test_mini_amplify_strengthens_the_class(mini):
    from vismech.datasets.world import CLASSES

    target = CLASSES.index("pullover")
    others = [c for c in range(len(CLASSES)) if c != target]
    clean, clean_prob = class_scores(mini)
    data = world_concept("pullover", images=64, steps=50)
    amplify = CADAmplify({"batch_size": 64})
    (amplified, amplified_prob), _ = edited_scores(mini, amplify, amplify.fit(mini[0], data), 0.01)
    assert amplified[target] >= clean[target] + 0.25, (clean.tolist(), amplified.tolist())
    assert amplified_prob[target] >= clean_prob[target] + 0.1, (clean_prob.tolist(), amplified_prob.tolist())
    assert (clean - amplified)[others].mean() <= 0.05


# --- reference switches and the tie fix (issue 18) ----------------------------------------------------------------

def test_both_ends_never_pick_the_same_tied_weight():
    """30 % of the scores are tied at 0 (zero gradients): one sort partitions each row, so 'both' zeroes exactly
    2n distinct weights per row (every weight once 2n reaches the width)."""
    gen = torch.Generator().manual_seed(0)
    score = torch.randn(6, 20, generator=gen)
    score[:, ::3] = 0.0  # 7 ties of 20 per row
    for ratio, per_row in ((0.3, 12), (0.25, 10), (0.5, 20), (0.7, 20)):  # n = 6, 5, 10, 14
        assert selection_masks({"w": score}, ratio, "row", "both")["w"].sum(1).tolist() == [per_row] * 6
    flat = selection_masks({"w": score}, 0.3, "matrix", "both")["w"]  # n = 36 of 120 at each end
    assert int(flat.sum()) == 72
    mask = pick(torch.zeros(3, 8), 4, "both")  # every score tied: the two ends still cover the row
    assert mask.all()
    ends = pick(score, 2, "both")
    order = score.argsort(dim=1, descending=True, stable=True)
    assert ends.gather(1, order[:, :2]).all() and ends.gather(1, order[:, -2:]).all()


def bf16() -> object:
    subject = tiny_subject(0)
    subject.pipeline.to(torch.bfloat16)
    return subject


def test_score_dtype_model_rounds_like_the_model_and_agrees_in_fp32(tiny):
    data = ConceptData("a sneaker", seeds=(3,), steps=2, guidance_scale=3.0)
    fp32 = {d: alpha(CADErase({"score_dtype": d}).fit(tiny, data)) for d in ("fp32", "model")}
    for site in fp32["fp32"]:  # an fp32 model: the same arithmetic either way
        assert torch.equal(fp32["fp32"][site], fp32["model"][site])
    half = bf16()
    low = {d: alpha(CADErase({"score_dtype": d}).fit(half, data)) for d in ("fp32", "model")}
    for site in low["model"]:  # w * g kept in bf16: every score is a bf16 number, and not all fp32 ones are
        assert torch.equal(low["model"][site].bfloat16().float(), low["model"][site])
    assert any(not torch.equal(a.bfloat16().float(), a) for a in low["fp32"].values())
    assert any(not torch.equal(low["model"][s], low["fp32"][s]) for s in low["model"])


def test_amplify_encoding_settings_change_what_the_vae_sees(tiny, monkeypatch):
    """pixel_range unit encodes [0, 1] pixels as they are, signed maps them to [-1, 1]; latent sample draws from
    the posterior with the method's generator, mean takes its mean."""
    from vismech.methods import cad

    vae = tiny.pipeline.vae
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    seen = []
    encode = vae.encode
    monkeypatch.setattr(vae, "encode", lambda x: seen.append(x.clone()) or encode(x))
    mean = cad.concept_latents(tiny, images, 2, "mean", "signed")
    unit = cad.concept_latents(tiny, images, 2, "mean", "unit")
    assert torch.equal(seen[0], images * 2 - 1) and torch.equal(seen[1], images)
    assert not torch.allclose(mean, unit)
    drawn = cad.concept_latents(tiny, images, 2, "sample", "signed", torch.Generator().manual_seed(5))
    posterior = encode(images * 2 - 1).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(5))
    sf = vae.config.scaling_factor
    torch.testing.assert_close(drawn, (posterior.mean + posterior.std * noise) * sf)
    torch.testing.assert_close(mean, posterior.mean * sf)


def test_amplify_generates_the_requested_images_and_reads_them_back_as_pixels(tiny):
    data = ConceptData("parachute", seeds=(0,), steps=2, image_prompt="a photo of parachute", image_count=3,
                       image_guidance_scale=7.5)
    latent = CADAmplify({"batch_size": 2}).fit(tiny, data)
    assert latent.meta["images"] == 3 and latent.meta["points"] == 2 * 3
    assert latent.meta["conditioning"] == "a photo of parachute" and "cfg 7.5" in latent.meta["image_source"]
    assert latent.meta["encoding"] == "none (final latents)"
    reference = CADAmplify({"batch_size": 2, "generated_images": "pixels", "latent": "sample",
                            "pixel_range": "unit"}).fit(tiny, data)
    assert reference.meta["encoding"] == "sample latent of unit pixels"
    assert any(not torch.equal(a, b) for a, b in zip(alpha(latent).values(), alpha(reference).values()))
    assert data.digest() != ConceptData("parachute", seeds=(0,), steps=2, image_prompt="a photo of parachute").digest()
