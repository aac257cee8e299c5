"""Paper track of the generative tasks: the SD v1.4 / v1.5 and DDPM cards run end to end on tiny random pipelines
saved with `save_pretrained` and loaded back through the real `from_pretrained` path, judged by random paper
judges of the real classes (torchvision ResNet-50, FairFace's ResNet-34, torch-fidelity's Inception-v3, an
open_clip CLIP) read from weight files. The judges' numbers are checked against the same networks run here by
hand on the same images; the cards compose into valid task configs."""
from __future__ import annotations

import math

import pytest
import torch

from paper_models import write_ddpm_pipeline, write_judges, write_sd_pipeline
from vismech.metrics.judges.paper import FaceCrop, group_probs
from vismech.datasets.bias import Sampling
from vismech.errors import VismechError
from vismech.seeding import item_seed

IMAGENETTE = ("tench", "church", "parachute")


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    return {"judges": write_judges(root), "sd": write_sd_pipeline(root / "sd"),
            "ddpm": write_ddpm_pipeline(root / "ddpm")}


def judge_options(paper, *roles: str) -> list[str]:
    options = {"classifier": ("classifier",), "attribute": ("attribute",), "clip": ("clip", "clip_arch"),
               "fid": ("fid", "reference")}
    return [f"task.judges.{key}={paper['judges'][key]}" for role in roles for key in options[role]]


def regenerate(folder, loader, ids, prompts, steps, guidance):
    """The unedited images of items `ids` (run seed 0), sampled again outside the run."""
    from vismech.sampling import sample

    subject = loader(weights=str(folder), dtype="float32")
    return sample(subject, ids, [item_seed(0, i) for i in ids], prompts=prompts, edit=None,
                  sampling=Sampling(steps=steps, eta=0.0 if prompts else 1.0, guidance_scale=guidance)).images


def unedited(record, name):
    return next(p for p in record["sweep"] if p["strength"] == 0.0)["metrics"][name]


def test_cad_objects_card_on_a_tiny_sd_v14_and_the_paper_judges(workspace, paper):
    """Erase 'parachute' among three Imagenette classes, with three retention captions: the ResNet-50 judge's
    top-1 by hand, FID of the retention images only against the reference folder by hand."""
    import torchvision
    from torchvision.models import ResNet50_Weights

    from vismech.metrics.judges.paper import inception, reference_features
    from vismech.metrics.generation import Gaussian, frechet_distance
    from vismech.models import stable_diffusion

    retention = ["a dog on a sofa", "a red bus", "two cats"]
    assert workspace.run("experiment=paper_cad_objects", "trainer=cpu", f"model.params.weights={paper['sd']}",
                         "model.params.dtype=float32", f"task.classes=[{','.join(IMAGENETTE)}]", "task.per_class=2",
                         "task.sampling.steps=3", "task.fit.steps=3", "task.fit.seeds=1", "method=cad_erase",
                         "task.strengths=[0.0,0.05]", f"task.retention=[{','.join(retention)}]",
                         *judge_options(paper, "classifier", "clip", "fid")) == 0
    record = workspace.records()[0]
    assert record["subject"]["id"] == "sd_v14" and record["subject"]["track"] == "paper"
    assert record["items"]["size"] == 3 * 2 + 3
    target, other, fid = (unedited(record, n) for n in ("target_accuracy", "other_accuracy", "fid"))
    assert target["item_ids"] == [4, 5] and other["item_ids"] == [0, 1, 2, 3] and fid["n"] == 3
    assert target["fingerprint_items"]["judge"]["profile"] == "top1/resnet50-v2"
    assert fid["fingerprint_items"]["judge"]["reference_size"] == 6

    prompts = [f"an image of a {c}" for c in IMAGENETTE for _ in range(2)] + retention
    images = regenerate(paper["sd"], stable_diffusion.load, list(range(9)), prompts, steps=3, guidance=7.5)
    bundle = ResNet50_Weights.IMAGENET1K_V2
    resnet = torchvision.models.resnet50()
    resnet.load_state_dict(torch.load(paper["judges"]["classifier"], weights_only=True))
    with torch.no_grad():
        top1 = resnet.eval()(bundle.transforms()(images[:6])).argmax(-1)
    wanted = torch.tensor([bundle.meta["categories"].index(c) for c in IMAGENETTE]).repeat_interleave(2)
    correct = (top1 == wanted).double().tolist()
    assert target["item_values"] == correct[4:] and other["item_values"] == correct[:4]

    features, fingerprint = inception(paper["judges"]["fid"], torch.device("cpu"))
    reference, _ = reference_features(paper["judges"]["reference"], features, fingerprint, cache_dir=None)
    by_hand = frechet_distance(features(images[6:]).double().numpy(), Gaussian(reference.double().numpy()))
    assert fid["value"] == pytest.approx(by_hand, rel=1e-4) and fid["value"] > 1.0
    assert "## paper · concept · sd_v14" in workspace.leaderboard.read_text()


def fairface_probs(paper, images, attribute):
    import torchvision
    from torchvision.transforms import functional as TF

    net = torchvision.models.resnet34(num_classes=18)
    net.load_state_dict(torch.load(paper["judges"]["attribute"], weights_only=True))
    x = TF.resize(images, [224, 224], antialias=True)
    x = TF.normalize(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        return group_probs(net.eval()(x), attribute).double()


def test_difflens_sd_card_on_a_tiny_sd_v15_with_fairface(workspace, paper):
    """The SD card (age of 'A face of a <job>' images): shares and FD from FairFace by hand; prompt augmentation
    names the age word; DiffLens fits its class pairs from the card's locate prompt and edits."""
    from vismech.models import stable_diffusion

    common = ["experiment=paper_difflens_sd", "trainer=cpu", f"model.params.weights={paper['sd']}",
              "model.params.dtype=float32", "task.ids=[200000,200006]", "task.sampling.steps=3",
              "task.judges.face_crop=null", *judge_options(paper, "attribute", "clip", "fid")]
    assert workspace.run(*common, "method=prompt_augmentation", "task.strengths=[0.0,1.0]") == 0
    small = {"sae_steps": 10, "sae_k": 8, "probe_per_class": 2, "probe_epochs": 1, "ig_samples": 6,
             "ig_steps": "[1,2]", "drift_samples": 0, "calibration_strengths": "[1.0]"}
    assert workspace.run(*common, "method=difflens", "task.strengths=[0.0,1.0]", "task.fit.fit_ids=[0,12]",
                         "task.fit.calibration_ids=[100000,100006]",
                         *(f"++paper_difflens_sd.config.difflens.{k}={v}" for k, v in small.items())) == 0
    records = {r["method"]["name"]: r for r in workspace.records()}
    augmented, difflens = records["prompt_augmentation"], records["difflens"]
    assert {r["subject"]["id"] for r in records.values()} == {"sd_v15"}
    config = difflens["method"]["config"]
    assert config["sae_k"] == 8 and (config["mode"], config["add_rule"], config["write_back"]) == ("add", "set", "delta")
    assert config["class_strengths"] == [30.0, 0.0, 50.0] and config["class_features"] == [10, 0, 30]
    assert set(unedited(augmented, "fd")["fingerprint_items"]["target"]) == {1 / 3}
    names = ("share_0-19", "share_20-59", "share_60+")
    # a paper reference folder has no attribute classes: no kid_per_class; no cmmd judge named: no cmmd
    assert set(augmented["sweep"][0]["metrics"]) == {*names, "fd", "kid", "precision", "recall", "fid", "clip_i",
                                                     "clip_t", "no_face_rate"}
    assert unedited(augmented, "no_face_rate")["value"] == 0.0  # no face crop: every image is judged

    jobs = ("firefighter", "doctor", "receptionist", "nurse")
    ids = list(range(200_000, 200_006))
    prompts = [f"A face of a {jobs[i % 4]}" for i in ids]
    images = regenerate(paper["sd"], stable_diffusion.load, ids, prompts, steps=3, guidance=7.5)
    probs = fairface_probs(paper, images, "age")
    for c, name in enumerate(names):
        assert unedited(augmented, name)["item_values"] == (probs.argmax(1) == c).double().tolist()
    by_hand = float(torch.linalg.vector_norm(probs.mean(0) - 1 / 3))
    assert unedited(augmented, "fd")["value"] == pytest.approx(by_hand, abs=1e-6)
    assert unedited(difflens, "fd")["value"] == unedited(augmented, "fd")["value"]  # the same unedited images
    edited = next(p for p in augmented["sweep"] if p["strength"] == 1.0)["metrics"]
    assert edited["clip_i"]["value"] < 1.0  # every prompt names an age word at strength 1


def test_difflens_ddpm_card_on_a_tiny_unconditional_ddpm(workspace, paper, monkeypatch):
    """The DDPM card with a CMMD judge (a tiny CLIP tower of the 336 px class): shares and FD by hand, and CMMD
    of the run's images against the reference folder as the judge embeds them by hand."""
    from paper_models import TINY_CLIP_VISUAL_336, random_clip_state, save_state

    from vismech.metrics.distribution import CMMD
    from vismech.metrics.judges import paper as paper_judges
    from vismech.models import ddpm

    monkeypatch.setitem(paper_judges.ARCHS, "clip-vit-l-14-336px", TINY_CLIP_VISUAL_336)
    paper_judges._build.cache_clear()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(31)
        cmmd_file = save_state(random_clip_state(TINY_CLIP_VISUAL_336), workspace.root / "cmmd.safetensors")
    assert workspace.run("experiment=paper_difflens_ddpm", "trainer=cpu", f"model.params.weights={paper['ddpm']}",
                         "task.ids=[200000,200004]", "task.sampling.steps=3", "method=noop",
                         "task.strengths=[0.0]", *judge_options(paper, "attribute", "clip", "fid"),
                         f"task.judges.cmmd={cmmd_file}") == 0
    record = workspace.records()[0]
    metrics = record["sweep"][0]["metrics"]
    assert record["subject"]["id"] == "ddpm_celebahq" and "clip_t" not in metrics
    assert record["items"]["name"] == "bias-gender/unconditional/test200000-200004"
    images = regenerate(paper["ddpm"], ddpm.load, list(range(200_000, 200_004)), None, steps=3, guidance=1.0)
    probs = fairface_probs(paper, images, "gender")
    assert metrics["share_male"]["item_values"] == (probs.argmax(1) == 0).double().tolist()
    assert metrics["fd"]["value"] == pytest.approx(float(torch.linalg.vector_norm(probs.mean(0) - 0.5)), abs=1e-6)

    judges = paper_judges.paper_judges(cmmd=str(cmmd_file), reference=paper["judges"]["reference"],
                                       cache_dir=paper["judges"]["cache_dir"], device="cpu")
    by_hand = CMMD(reference=judges.cmmd_reference)
    by_hand.update(torch.arange(4), judges.cmmd_features(images))
    assert metrics["cmmd"]["plugin_value"] == pytest.approx(by_hand.summarize()["plugin_value"], rel=1e-5, abs=1e-6)
    assert metrics["cmmd"]["fingerprint_items"]["judge"]["profile"] == "cmmd/clip-vit-l-14-336px"
    paper_judges._build.cache_clear()


@pytest.mark.parametrize("card, model, attribute", [
    ("paper_cad_objects", "sd_v14", None), ("paper_difflens_sd", "sd_v15", "age"),
    ("paper_difflens_ddpm", "ddpm_celebahq", "gender")])
def test_generative_paper_cards_compose_into_valid_task_configs(card, model, attribute):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from vismech.config import typed_config
    from vismech.registry import TASKS

    with initialize_config_module("vismech.configs", version_base=None):
        cfg = compose("config", overrides=[f"experiment={card}", "method=difflens" if attribute else "method=cad_erase"],
                      return_hydra_config=True)
    task = TASKS.get(cfg.task.name)
    task_cfg = typed_config(task.Config, OmegaConf.to_container(cfg.task, resolve=True), f"task '{task.name}'")
    assert cfg.model.params.id == model and cfg.trainer.accelerator == "gpu" and task_cfg.judges["name"] == "paper"
    assert task_cfg.judges["reference_split"] is None and task_cfg.limit is None
    if card == "paper_cad_objects":
        assert len(task_cfg.class_names()) == 10 and task_cfg.per_class == 500 and task_cfg.prompt_of("tench") == \
            "an image of a tench"
        assert task_cfg.sampling == {"steps": 50, "eta": 0.0, "guidance_scale": 7.5, "batch_size": 16}
        # amplify fits on 50 images of "a photo of X" at the pipeline's CFG, as the reference: 2,500 points
        data = task.make_fit_data(task_cfg, None)
        assert (data.amplify_prompt, len(data.image_seeds), data.image_guidance, data.steps) == \
            ("a photo of parachute", 50, 7.5, 50)
        assert (data.concept, data.seeds, data.guidance_scale) == ("an image of a parachute", (0,), 3.0)
    else:
        assert task_cfg.attribute == attribute and task_cfg.labeler == "judge"
        assert cfg.method.config.sae_k == (1024 if model == "sd_v15" else 32)
        assert list(cfg.method.config.ig_steps) == ([1, 48] if model == "sd_v15" else [40, 49])
        assert cfg.method.config.write_back == ("delta" if model == "sd_v15" else "delta_and_bias")
        assert task_cfg.strengths[0] == 0.0 and len(task_cfg.strengths) == 4
    if model == "sd_v15":
        assert task_cfg.ids == [200000, 202000] and task_cfg.test_prompts(True)[3] == "A face of a nurse"
        plain, worded = task_cfg.conditional_prompts(task_cfg.fit_prompts)
        assert plain == ("A photo of a person",) and worded[0] == ("A photo of a child person",
                                                                  "A photo of a adult person",
                                                                  "A photo of a old person")
    if model == "ddpm_celebahq":
        assert task_cfg.ids == [200000, 210000] and task_cfg.sampling["eta"] == 1.0


def test_face_crop_boxes_and_drops_images_without_a_face(monkeypatch):
    """The crop is the detected face squared and padded by a quarter per side, moved inside the image; an image
    without a face keeps itself and is marked, and FairFace's row for it is all zeros (left out of the FD)."""
    pytest.importorskip("cv2")
    crop = FaceCrop()
    assert crop.box((10, 20, 8, 12), 64, 64) == (17, 5, 18)  # side 12 x 1.5, centred on (14, 26)
    assert crop.box((0, 0, 40, 40), 48, 64) == (0, 0, 48)  # clipped to the image and moved inside
    faces = {0: (4, 4, 8, 8), 1: None}
    calls = iter(range(2))
    monkeypatch.setattr(FaceCrop, "detect", lambda self, gray: faces[next(calls)])
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    crops, found = crop(images)
    assert found.tolist() == [True, False] and crops.shape == (2, 3, 224, 224)
    from torchvision.transforms import functional as TF

    assert torch.allclose(crops[1], TF.resize(images[1], [224, 224], antialias=True))
    assert torch.allclose(crops[0], TF.resize(images[0][:, 2:14, 2:14], [224, 224], antialias=True))


def test_group_probs_merge_fairface_bins_per_protocol():
    logits = torch.zeros(1, 18)
    logits[0, 3] = logits[0, 4] = 2.0  # East and Southeast Asian
    race = group_probs(logits, "race")[0]
    e = math.exp(2.0)
    assert race.tolist() == pytest.approx([1 / (2 * e + 3), 1 / (2 * e + 3), 2 * e / (2 * e + 3), 1 / (2 * e + 3)])
    age = group_probs(logits, "age")[0]
    assert age.tolist() == pytest.approx([3 / 9, 4 / 9, 2 / 9])  # equal bins: 3 young, 4 adult, 2 old


@pytest.mark.parametrize("spec, match", [
    ({"classifier": "attribute"}, r"does not fit torchvision resnet50"),
    ({"attribute": "missing"}, r"FairFace resnet34 .* weights file '.*nothing.pt' does not exist"),
    ({"clip": "clip", "clip_arch": "ViT-X-99"}, r"unknown open_clip arch 'ViT-X-99'; the protocols' archs: "
                                                r"ViT-B-32-quickgelu"),
    ({"fid": "fid"}, r"FID needs both judges.fid \(Inception weights\) and judges.reference"),
    ({"reference_split": "test"}, r"task.judges.reference_split is an option of the world judges"),
    ({"attribute": "attribute", "face_crop": "dlib"}, r"face_crop must be one of None, haar, got 'dlib'"),
])
def test_bad_paper_judge_options_are_one_line_errors(paper, spec, match, tmp_path):
    from vismech.metrics.judges import load_judges

    files = {**paper["judges"], "missing": str(tmp_path / "nothing.pt")}
    options = {k: files.get(v, v) if k in ("classifier", "attribute", "clip", "fid") else v for k, v in spec.items()}
    with pytest.raises(VismechError, match=match) as caught:
        load_judges({"name": "paper", "cache_dir": None, **options})
    assert "\n" not in str(caught.value)


def test_paper_bias_config_errors_name_the_value():
    from vismech.benchmarks.bias import BiasConfig
    from vismech.config import typed_config

    paper = {"name": "bias", "judges": {"name": "paper"}, "attribute": "age", "labeler": "judge"}
    cases = [({}, r"task.classes must name the classes of attribute 'age'"),
             ({"classes": ["0-19", "60+"], "labeler": "pixel"}, r"task.labeler=pixel measures only the world's colour"),
             ({"classes": ["0-19", "60+"], "prompts": ["A face of a nurse"]}, r"one '\{\}' for the attribute word"),
             ({"classes": ["0-19", "60+"], "class_words": {"0-19": "young"}}, r"task.class_words must name a word "
                                                                               r"for each class")]
    for change, match in cases:
        with pytest.raises(VismechError, match=match):
            typed_config(BiasConfig, {**paper, **change}, "task 'bias'")
    cfg = typed_config(BiasConfig, {**paper, "classes": ["0-19", "60+"]}, "task 'bias'")
    with pytest.raises(VismechError, match=r"needs task.prompts \(templates with one \{\} for the age word\)"):
        cfg.test_prompts(conditional=True)
