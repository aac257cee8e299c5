"""bias: steer what a diffusion model generates towards a target distribution of one attribute; measure the result.

docs/tasks/bias.md (metrics and headline) and docs/protocols.md. Items are test sample ids (`task.ids`, a range inside
`vismech.datasets.bias.TEST_IDS`, disjoint from the fit and calibration ids a method tunes on, cut to its first
`task.limit` ids when a limit is set: the item set's name and digest say so); a text-conditional
subject gives id i the prompt `prompts[i % len(prompts)]`, so `task.ids` spreads evenly over the colour-less garment
prompts. Every method and strength generates the same items on per-item seeds; the unedited images are generated
too (shared by all methods). Per sweep point:
- `share_<class>`: per image 1 if the labeler (`task.labeler`: the exact pixel rule, or the judge's attribute head)
  measures that class, so the mean is the class's share; images the pixel rule sees no colour in count for none;
- `fd`: fairness discrepancy, the L2 distance between the mean of the judge's attribute probability vectors
  (restricted to the task's classes) and the target;
- `kid`: KID (unbiased, with an honest interval at any n) against a reference at the target distribution (the
  world's uniform test split): image quality that a successful debiasing does not pay for by construction;
- `kid_per_class`: the mean over the attribute's classes of the KID between the images labelled with a class and
  the reference images of that class (the world's ground truth colour): quality read apart from the attribute mix;
  where the reference's classes are unknown (a paper reference folder) the column is left out;
- `precision` and `recall` (Kynkäänniemi et al., k = 3, torch-fidelity's definition) against the same reference:
  the share of images on the reference's feature manifold (fidelity) and of the reference on the images'
  (diversity); a debiasing edit should raise recall without losing precision;
- `cmmd` (paper track, when the card names `judges.cmmd`): CMMD in CLIP ViT-L/14@336px embeddings against the
  reference folder;
- `fid`: against the world's *train* split, which carries the training skew: how far the generations depart from
  the distribution the model learned (any shift of the attribute raises it); a stated secondary column, the
  plug-in without an interval at 192 images in 192-d features;
- `clip_i`: CLIP cosine between each edited image and the unedited image of the same seed (1 at the identity);
- `clip_t` (conditional subjects only): CLIP alignment of each image with its prompt;
- `judge_agreement`: whether the pixel rule and the judge name the same class (they must agree for `fd`, which
  reads the judge, and the shares, which may read the pixel rule, to describe the same images).
The headline (vismech.tradeoff) is the lowest `fd` on the sweep's curve, interpolated item by item between sweep
points, where `kid` stays at most `quality_budget` (relative) above the unedited model's; never the unedited point
unless the method is the no-op; "no point within budget" when no edited point qualifies.

Paper track: the attribute is the paper judge's (FairFace: gender, age, race, with the groups as `classes`), the
labeler is that judge, and conditional prompts are the card's templates (`prompts`, with one {} for the attribute
word: "A face of a {} nurse" samples "A face of a nurse", and prompt augmentation fills the word in). There is no
pixel rule: `judge_agreement` gives way to `no_face_rate`, the share of images the face crop finds no face in,
which are left out of the shares and the fd (policy "drop"). FID reads the paper's Inception features against the
card's reference folder.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from ..datasets.bias import ATTRIBUTES, LABELERS, BiasFitData, BiasItems, measure_attribute, template_prompts, \
    world_fit_data, world_prompts
from ..datasets.world import WorldConfig
from ..errors import VismechError
from ..metrics.base import fingerprint_of
from ..metrics.generation import share_metric
from ..plots import image_grid
from ..registry import TASKS
from ..tradeoff import Bound
from .generative import GenerativeBenchmark, GenerativeConfig
from ..metrics.judges import Judges, load_judges

GRID_ITEMS = 8  # items (one per prompt, first ones first) in the run's image grid
FIT_KEYS = ("fit_ids", "calibration_ids", "noise_seed")  # what `task.fit` may set; the rest follows the task


@dataclass
class BiasConfig(GenerativeConfig):
    attribute: str = "colour"  # the world's colour (mini), or the paper judge's gender | age | race
    classes: list[str] | None = None  # null: the mini world's palette; a judge's attribute names its groups here
    target: list[float] | None = None  # null: uniform over `classes`
    ids: list[int] = field(default_factory=lambda: [200_000, 200_192])  # test sample ids [start, stop)
    labeler: str = "pixel"  # what measures the shares (and the fit's and calibration's classes): pixel | judge
    # conditional subjects: test prompt templates with one {} for the attribute word ("A face of a {} nurse"); the
    # sampled prompt leaves the word out. null: the world's colour-less garment prompts
    prompts: list[str] | None = None
    fit_prompts: list[str] | None = None  # templates the conditional fits pair classes in; null: `prompts`
    class_words: dict[str, str] | None = None  # each class's word in the templates; null: the class name
    fit: dict[str, Any] = field(default_factory=dict)  # overrides of world_fit_data: fit_ids, calibration_ids, ...
    # judges: FID against the skewed train split, KID against the uniform test split (see the module docstring)
    judges: dict[str, Any] = field(default_factory=lambda: {"name": "world", "reference_split": "train",
                                                            "kid_reference_split": "test", "reference_count": 2000})

    def validate(self) -> None:
        super().validate()
        world = self.judges.get("name", "world") == "world"
        if world and self.attribute not in ATTRIBUTES:
            raise VismechError(f"unknown task.attribute {self.attribute!r}; known: {', '.join(ATTRIBUTES)}")
        if self.labeler not in LABELERS:
            raise VismechError(f"unknown task.labeler {self.labeler!r}; known: {', '.join(LABELERS)}")
        if self.labeler == "pixel" and self.attribute not in ATTRIBUTES:
            raise VismechError(f"task.labeler=pixel measures only the world's {', '.join(ATTRIBUTES)}; attribute "
                               f"{self.attribute!r} is measured by its judge: set task.labeler=judge")
        if len(self.ids) != 2:
            raise VismechError(f"task.ids must be [start, stop), got {self.ids}")
        unknown = sorted(set(self.fit) - set(FIT_KEYS))
        if unknown:
            raise VismechError(f"unknown task.fit key(s) {unknown}; known: {', '.join(FIT_KEYS)}")
        classes = self.class_names()
        if self.target is not None and len(self.target) != len(classes):
            raise VismechError(f"task.target must hold one probability per class ({len(classes)}: "
                               f"{', '.join(classes)}), got {list(self.target)}")
        missing = sorted(set(self.class_words or {}) ^ set(classes)) if self.class_words else []
        if missing:
            raise VismechError(f"task.class_words must name a word for each class ({', '.join(classes)}), "
                               f"got {dict(self.class_words)}")
        for templates in (self.prompts, self.fit_prompts):
            if templates is not None:
                template_prompts(templates, self.words())
        self.fit_data(conditional=False)  # BiasFitData and BiasItems check the rest (ranges, target, classes)
        BiasItems(tuple(self.ids), (), tuple(classes), self.target_distribution(), self.attribute)

    def class_names(self) -> tuple[str, ...]:
        if self.classes:
            return tuple(self.classes)
        if self.attribute in ATTRIBUTES:
            return WorldConfig().palette
        raise VismechError(f"task.classes must name the classes of attribute {self.attribute!r} (its judge's groups, "
                           f"e.g. gender: [male, female]; age: ['0-19', '20-59', '60+']; race: [White, Black, "
                           f"Asian, Indian])")

    def test_range(self) -> tuple[int, int]:
        """The test ids [start, stop): `ids`, cut to its first `limit` ids when a limit is set."""
        start, stop = (int(v) for v in self.ids)
        return (start, stop) if self.limit is None else (start, min(stop, start + self.limit))

    def words(self) -> tuple[str, ...]:
        return tuple((self.class_words or {}).get(c, c) for c in self.class_names())

    def target_distribution(self) -> tuple[float, ...]:
        k = len(self.class_names())
        return tuple(self.target) if self.target is not None else (1 / k,) * k

    def conditional_prompts(self, templates: list[str] | None) -> tuple[tuple, tuple]:
        """(prompts without the attribute word, each with every class's word) from templates, or the world's."""
        if templates is not None:
            return template_prompts(templates, self.words())
        if self.attribute not in ATTRIBUTES:
            raise VismechError(f"a text-conditional subject needs task.prompts (templates with one {{}} for the "
                               f"{self.attribute} word) for attribute {self.attribute!r}")
        return world_prompts(self.class_names())

    def test_prompts(self, conditional: bool) -> tuple[str, ...]:
        return self.conditional_prompts(self.prompts)[0] if conditional else ()

    def fit_data(self, conditional: bool, judges: Judges | None = None) -> BiasFitData:
        """The methods' fit data: the world's sampler defaults overridden by this task's sampling, with this task's
        classes, target, prompts and labeler (a judge labels through `judges`' attribute head)."""
        sampling = world_fit_data(conditional).sampling
        sampling = replace(sampling, **{k: v for k, v in self.sampling.items() if k != "batch_size"})
        extra: dict[str, Any] = {}
        if conditional:
            extra["prompts"], extra["attribute_prompts"] = self.conditional_prompts(self.fit_prompts or self.prompts)
            if self.fit_prompts is not None:  # the test prompts' wordings, for prompt augmentation
                extra["wordings"] = tuple(zip(*self.conditional_prompts(self.prompts)))
        if self.labeler == "judge" and judges is not None:
            extra["label_fn"], extra["judge"] = judge_labeler(judges, self.attribute, self.class_names())
        return BiasFitData(attribute=self.attribute, classes=self.class_names(), target=self.target_distribution(),
                           labeler=self.labeler, sampling=sampling, **extra,
                           **{k: tuple(v) if isinstance(v, list) else v for k, v in self.fit.items()})


def judge_columns(judges: Judges, attribute: str, classes: tuple[str, ...]) -> tuple[torch.Tensor, Any]:
    """(the judge's column of each class, its probs fn) for `attribute`; a class it does not know fails here."""
    if attribute not in judges.attributes:
        raise VismechError(f"the judges have no {attribute!r} head; they have: {', '.join(judges.attributes) or 'none'}"
                           f" (the paper track's attribute judge is task.judges.attribute=/path/to/fairface.pt)")
    groups, probs = judges.attributes[attribute]
    missing = [c for c in classes if c not in groups]
    if missing:
        raise VismechError(f"the judge's {attribute} head does not know {missing}; it knows: {', '.join(groups)}")
    return torch.tensor([groups.index(c) for c in classes]), probs


def judged(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From (N, K) probabilities over the task's classes (a zero row: the judge saw no face): (rows renormalised
    over the classes, each image's class or -1, whether it was judged)."""
    mass = probs.sum(1, keepdim=True)
    found = mass.squeeze(1) > 0.5
    probs = probs / mass.clamp_min(1e-12)
    return probs, torch.where(found, probs.argmax(1), -1), found


def judge_labeler(judges: Judges, attribute: str, classes: tuple[str, ...]) -> tuple[Any, str]:
    """(images -> class index or -1, the judge's fingerprint) for fit data labelled by the task's judge."""
    columns, probs = judge_columns(judges, attribute, classes)
    role = "attribute" if "attribute" in judges.fingerprints else "classifier"
    return (lambda images: judged(probs(images).double().cpu()[:, columns])[1],
            fingerprint_of(judges.fingerprints.get(role, {})))


QUALITY_METRICS = ("kid", "kid_per_class", "precision", "recall", "fid", "cmmd")  # also of the unedited images


@TASKS.register()
class BiasBenchmark(GenerativeBenchmark):
    """Attribute distribution of generations under an edit: shares, FD to the target, FID, CLIP-I, CLIP-T."""

    name = "bias"
    version = "2"
    protocol = ("test sample ids on per-item seeds (conditional: colour-less garment prompts, id mod prompts), the "
                "method's sampler as fitted (DDIM; CFG when conditional); per class the share of images the labeler "
                "assigns it; fd = L2(mean judge attribute probabilities, target), unbiased; kid against a reference "
                "at the target distribution; fid against the world train split (the training skew); clip_i edited "
                "vs unedited same seed; clip_t (conditional); judge_agreement pixel rule vs judge")
    # and share_<class> per task class, and judge_agreement (world) or no_face_rate (paper)
    metric_names = ("fd", "kid", "kid_per_class", "precision", "recall", "fid", "cmmd", "clip_i", "clip_t")
    curve_x = "kid"  # the board's trade-off picture: the primary metric against this quality metric
    primary_metric = "fd"
    headline_rule = ("the lowest fd on the sweep's curve (interpolated item by item between sweep points) where kid "
                     "<= unedited kid + quality_budget x |unedited kid|; never the unedited point but for the no-op; "
                     "else no point within budget")
    Config = BiasConfig
    item_keys = ("ids", "limit", "fit.fit_ids", "fit.calibration_ids")

    @classmethod
    def make_items(cls, task_cfg: BiasConfig, subject) -> BiasItems:
        return BiasItems(task_cfg.test_range(), task_cfg.test_prompts(subject.conditional), task_cfg.class_names(),
                         task_cfg.target_distribution(), task_cfg.attribute)

    @classmethod
    def make_fit_data(cls, task_cfg: BiasConfig, subject) -> BiasFitData:
        judges = load_judges(task_cfg.judges) if task_cfg.labeler == "judge" else None
        return task_cfg.fit_data(subject.conditional, judges)

    def __init__(self, subject, method, finding, strengths, run_seed, task_cfg: BiasConfig | None = None):
        task_cfg = task_cfg or BiasConfig(name=self.name)
        # evaluate with the sampler the method was fitted and calibrated with: the subject's, as the fit data has it
        fitted = task_cfg.fit_data(getattr(subject, "conditional", False)).sampling
        sampling = {"steps": fitted.steps, "eta": fitted.eta, "guidance_scale": fitted.guidance_scale,
                    **task_cfg.sampling}
        task_cfg = replace(task_cfg, sampling=sampling)
        self.classes, self.target = task_cfg.class_names(), task_cfg.target_distribution()
        self.labeler = task_cfg.labeler
        self.shares = tuple(f"share_{c}" for c in self.classes)
        # the world's colour has a pixel rule to check the judge against; a paper judge may find no face instead
        self.pixel_rule = task_cfg.attribute in ATTRIBUTES
        check = "judge_agreement" if self.pixel_rule else "no_face_rate"
        self.attribute = task_cfg.attribute
        judges = load_judges(task_cfg.judges)
        # the per-class form needs the reference's classes: the world's ground truth (a paper reference has none)
        dropped = {"clip_t"} if not getattr(subject, "conditional", False) else set()
        if task_cfg.attribute not in judges.kid_reference_classes:
            dropped.add("kid_per_class")
        if judges.cmmd_features is None:
            dropped.add("cmmd")
        self.metric_names = self.shares + tuple(n for n in (*type(self).metric_names, check) if n not in dropped)
        super().__init__(subject, method, finding, strengths, run_seed, task_cfg)
        self.judge_columns, self.attribute_probs = judge_columns(self.judges, task_cfg.attribute, self.classes)
        self.unedited = nn.ModuleDict({n: self.make_metric(n) for n in (*self.shares, "fd", *QUALITY_METRICS)
                                       if n in self.metric_names})
        self.prompts = task_cfg.test_prompts(subject.conditional)
        start, stop = task_cfg.test_range()
        self.grid_ids = list(range(start, min(start + GRID_ITEMS, stop)))

    def reference_metrics(self) -> dict:
        return dict(self.unedited.items())

    def make_metric(self, name: str, **kwargs):
        if name == "fd":
            kwargs["target"] = self.target
        if name == "kid_per_class":  # the reference's classes, as indices into the task's classes
            groups = self.judges.attributes[self.attribute][0]
            task_index = {groups.index(c): i for i, c in enumerate(self.classes) if c in groups}
            kwargs["reference_labels"] = torch.tensor(
                [task_index.get(int(g), -1) for g in self.judges.kid_reference_classes[self.attribute]])
        if name in self.shares:
            share_metric(name.removeprefix("share_"))  # registered under its name, for classes off the palette
        metric = super().make_metric(name, **kwargs)
        if name in self.shares:
            metric.judge["labeler"] = self.labeler  # the pixel rule has no weights: say which rule counted
            c = self.shares.index(name)
            metric.direction = "lower" if self.target[c] < self.trained_share(c) else "higher"
        return metric

    def trained_share(self, c: int) -> float:
        """The class's share in the world's train split, which the model learned: its share should move from
        there towards the target, so it is a share to lower where the target is below it. A paper model's training
        share is unknown: uniform stands in (a nominal direction; FD ranks the methods, not a share)."""
        world = WorldConfig()
        if not self.pixel_rule or self.classes[c] not in world.palette:
            return 1 / len(self.classes)
        return world.skew[world.palette.index(self.classes[c])]

    def prompts_of(self, ids: list[int]) -> list[str] | None:
        return [self.prompts[i % len(self.prompts)] for i in ids] if self.prompts else None

    # --- measuring ---------------------------------------------------------------------------------------------

    def measure(self, metrics, ids: torch.Tensor, images: torch.Tensor) -> None:
        """Shares, fd, fid and judge_agreement or no_face_rate of one batch of images into `metrics` (those of them
        it holds). Images the judge finds no face in are left out of the shares and fd, and counted apart."""
        probs, labels, found = judged(self.attribute_probs(images).double().cpu()[:, self.judge_columns])
        pixel = measure_attribute(images, self.classes, "pixel") if self.pixel_rule else None
        if self.labeler == "pixel":
            labels = pixel
        for name in self.shares:
            metrics[name].update(ids[found], labels[found], self.classes)
        metrics["fd"].update(ids[found], probs[found])
        features = self.judges.features(images).double().cpu()
        for name in ("fid", "kid", "precision", "recall"):
            metrics[name].update(ids, features)
        if "kid_per_class" in metrics:
            metrics["kid_per_class"].update(ids, features, labels)
        self.update_cmmd(metrics, ids, images)
        if "judge_agreement" in metrics:
            metrics["judge_agreement"].update(ids, pixel, probs)
        if "no_face_rate" in metrics:
            metrics["no_face_rate"].update(ids, found)

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids = batch["id"].cpu()
        prompts = self.prompts_of(ids.tolist())
        unedited = self.images(ids.tolist(), prompts, None)
        self.measure(self.unedited, ids, unedited)
        plain = self.judges.encode_image(unedited)
        text = self.judges.encode_text(prompts) if prompts is not None else None
        for i in range(len(self.strengths)):
            images = unedited if self.is_identity(i) else self.images(ids.tolist(), prompts, i)
            metrics = self.point_metrics[i]
            self.measure(metrics, ids, images)
            encoded = plain if images is unedited else self.judges.encode_image(images)
            metrics["clip_i"].update(ids, encoded, plain)
            if text is not None:
                metrics["clip_t"].update(ids, encoded, text)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.unedited_summary = {n: m.summarize() for n, m in self.unedited.items()}

    def headline(self) -> dict[str, Any]:
        unedited = self.unedited_summary["kid"]["value"]
        return self.matched_headline([Bound("kid", unedited + self.task_cfg.quality_budget * abs(unedited),
                                            "at most")])

    # --- pictures and tables -----------------------------------------------------------------------------------

    def cost(self) -> list[dict[str, float]]:
        """Per sweep point, what one image costs (UNet rows in full and decoder-only rows, and their price in UNet
        passes), counted on a few grid items sampled again outside the cache: the counts do not depend on the
        machine, and the cache would hide them."""
        from ..sampling import decoder_fraction, sample

        ids = self.grid_ids
        fraction = decoder_fraction(self.subject)
        out = []
        for i in range(len(self.strengths)):
            with warnings.catch_warnings():  # as in `images`: the cost meter's backward hook has nothing to see
                warnings.filterwarnings("ignore", message="For backward hooks to be called")
                made = sample(self.subject, ids, self.seeds(ids), prompts=self.prompts_of(ids), edit=self.edit(i),
                              sampling=self.sampling)
            out.append({k: round(v, 4) for k, v in made.cost(fraction).items() if k != "seconds_per_image"})
        return out

    def artifacts(self) -> dict[str, Any]:
        rows = [f"{i}" + (f": {p}" if p else "") for i, p in
                zip(self.grid_ids, self.prompts_of(self.grid_ids) or [""] * len(self.grid_ids))]
        prompts = self.prompts_of(self.grid_ids)
        columns = [("unedited", self.images(self.grid_ids, prompts, None))] + [
            (f"{self.method.name} {s:g}", self.images(self.grid_ids, prompts, i)) for i, s in enumerate(self.strengths)]
        calibration = (self.finding.meta.get("calibration") or {}).get("strength")
        curve = {"strength": self.strengths, "classes": list(self.classes), "target": list(self.target),
                 "labeler": self.labeler, "headline_strength": self.headline_strength(),
                 "calibrated_strength": calibration, "quality_budget": self.task_cfg.quality_budget,
                 "fid_reference": self.judges.fingerprints.get("fid", {}).get("reference"),
                 "kid_reference": self.judges.fingerprints.get("kid", {}).get("reference"),
                 "unedited": {n: s["value"] for n, s in self.unedited_summary.items()},
                 **{m: [s[m]["value"] for s in self.summaries] for m in self.metric_names},
                 "cost_per_image": self.cost()}
        title = f"{self.method.name} on {self.subject.id}: unedited vs edited, same seeds"
        return {"bias_grid": image_grid(columns, rows, title), "bias_curve": self.curve_figure(curve),
                "bias_curve_values": curve}

    def curve_figure(self, curve: dict[str, Any]) -> Figure:
        figure = Figure(figsize=(10, 3.4))
        shares, tradeoff, similarity = figure.subplots(1, 3)
        for c, name in enumerate(curve["classes"]):
            line, = shares.plot(curve["strength"], curve[f"share_{name}"], "o-", label=name,
                                color=name if name in ("red", "green", "blue", "yellow") else None)
            shares.axhline(curve["target"][c], color=line.get_color(), lw=0.8, ls=":")
        shares.axvline(curve["headline_strength"], color="grey", lw=0.8, label="headline point")
        shares.set(xlabel=f"strength of {self.method.name}", ylabel=f"share ({curve['labeler']}); dotted: target",
                   ylim=(-0.02, 1.02), title="attribute distribution")
        shares.legend(fontsize=7)
        for ax, quality, label in ((tradeoff, "kid", "KID vs target-distribution reference"),
                                   (similarity, "clip_i", "CLIP-I")):
            ax.plot(curve["fd"], curve[quality], "o-")
            for s, x, y in zip(curve["strength"], curve["fd"], curve[quality]):
                ax.annotate(f"{s:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set(xlabel="fairness discrepancy (lower: nearer the target)", ylabel=label, title=f"FD vs {label}")
        kid = curve["unedited"]["kid"]
        tradeoff.axhline(kid + curve["quality_budget"] * abs(kid), color="grey", lw=0.8, ls=":",
                         label="quality budget")
        tradeoff.legend(fontsize=7)
        for ax in (shares, tradeoff, similarity):
            ax.grid(alpha=0.3)
        figure.suptitle(f"{self.method.name} on {self.subject.id}", fontsize=9)
        figure.tight_layout()
        return figure

