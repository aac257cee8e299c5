"""concept: erase or amplify one concept of a text-to-image model by editing its weights; judge what it generates.

docs/tasks/concept.md and docs/protocols.md. Items are (class prompt, seed) pairs: `per_class` seeds for every class of
the task, the target among them. Every method and strength generates the same items (per-item seeds from the run
seed), and a judge classifies each image:
- `target_accuracy` / `target_prob`: the judge's top-1 accuracy and probability of the target on the target's
  prompts; an erase method wants them down, an amplify method (its `goal`) up;
- `other_accuracy`: accuracy on every other class's prompts, which an edit must keep;
- `clip_t`: CLIP alignment of every image with its prompt;
- `kid`, `precision`, `recall`, `fid` (and `cmmd` where the card names its judge): of the retention images against the judge's reference set (KID unbiased
  with an interval; precision and recall the k-NN manifold fractions of Kynkäänniemi et al. as torch-fidelity
  computes them; FID the papers' number, without an interval below 5 items a feature dimension). Retention images
  are those of
  `retention` prompts when the task names them (the paper's COCO-30k captions: a text file, one caption per line,
  or a CSV with a `prompt` column), else those of the other classes' prompts: an edit must leave them as they
  were. Retention items follow the class items (ids `classes x per_class` on), carry label -1 and feed only
  clip_t and the feature-space metrics.
The headline (vismech.tradeoff) is the best target score on the sweep's curve, interpolated item by item between
sweep points, where quality holds against the unedited model on the same items (its images are generated too,
and shared by all methods): other-class accuracy at most `quality_budget` below, CLIP-T at most `clip_budget`
points below, KID at most `kid_budget` x |unedited KID| above; never the unedited point but for the no-op.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import Dataset

from ..datasets.concepts import ConceptData, world_class_images
from ..errors import VismechError
from ..metrics.classification import correct
from ..metrics.judges import load_judges
from ..io import read_user_text
from ..plots import image_grid
from ..registry import TASKS
from ..tradeoff import Bound
from .concept_attacks import ConceptAttacks
from .generative import GenerativeBenchmark, GenerativeConfig

GOALS = ("erase", "amplify")
GRID_SEEDS = 2  # seeds per prompt in the run's image grid


@dataclass
class ConceptConfig(GenerativeConfig):
    target: str = "sandal"  # the concept to erase or amplify: one of `classes`
    classes: list[str] | None = None  # null: the mini world's garment classes
    prompt: str | None = None  # template with {} for the class name; null: the mini world's wording ("a sandal")
    per_class: int = 8  # seeds per class prompt
    goal: str | None = None  # erase | amplify; null: the method's. Controls (no-op, random) take the task's goal
    retention: str | list[str] | None = None  # prompts whose images measure FID: a file, a list; null: the others'
    retention_limit: int | None = None  # the first N retention prompts
    clip_budget: float = 2.0  # the headline point may lose at most this many CLIP-T points (100 x cosine)
    kid_budget: float = 1.0  # ... and raise the retention images' KID by at most this x |unedited KID|
    # fit data: DDIM trajectories of the target prompt (erase), and `images` images of the target (amplify; on the
    # mini track the world's train images of the class, else 0: the model's own samples of the prompt)
    fit: dict[str, Any] = field(default_factory=lambda: {"seeds": 16, "steps": 25, "guidance_scale": 3.0,
                                                         "images": 64})
    # erasure under attack (vismech.benchmarks.concept_attacks); null: no attack metrics. Only an erase is attacked
    attack: dict[str, Any] | None = None
    related: int = 0  # side effects: the k classes nearest the target (CLIP text similarity); 0: no split

    def validate(self) -> None:
        super().validate()
        if self.goal is not None and self.goal not in GOALS:
            raise VismechError(f"task.goal must be one of {', '.join(GOALS)} or null, got {self.goal!r}")
        for key in ("clip_budget", "kid_budget"):
            if not 0 <= getattr(self, key) <= 100:
                raise VismechError(f"task.{key} must be in [0, 100], got {getattr(self, key)}")
        if self.per_class < 1:
            raise VismechError(f"task.per_class must be >= 1, got {self.per_class}")
        names = self.class_names()
        if self.target not in names:
            raise VismechError(f"unknown task.target '{self.target}'; known classes: {', '.join(names)}")
        if self.prompt is not None and "{}" not in self.prompt:
            raise VismechError(f"task.prompt must hold '{{}}' for the class name, got {self.prompt!r}")
        if self.retention_limit is not None and self.retention_limit < 1:
            raise VismechError(f"task.retention_limit must be >= 1 or null, got {self.retention_limit}")
        if self.retention is not None and not self.retention_prompts():
            raise VismechError(f"task.retention names no prompts ({self.retention!r}); give a caption file, a "
                               f"non-empty list, or null for the other classes' prompts")
        from .concept_attacks import check_attack

        check_attack(self.attack)
        if not isinstance(self.related, int) or not 0 <= self.related < len(names) - 1:
            raise VismechError(f"task.related must be an integer in [0, {len(names) - 2}] (the other classes but one), "
                               f"got {self.related!r}")
        known = ("guidance_scale", "image_guidance_scale", "image_prompt", "images", "seeds", "steps")
        unknown = set(self.fit) - set(known)
        if unknown:
            raise VismechError(f"unknown task.fit key(s) {sorted(unknown)}; known: {', '.join(known)}")
        template = self.fit.get("image_prompt")
        if template is not None and (not isinstance(template, str) or "{}" not in template):
            raise VismechError(f"task.fit.image_prompt must hold '{{}}' for the class name, got {template!r}")

    def class_names(self) -> list[str]:
        from ..datasets.world import CLASSES

        return list(self.classes) if self.classes else list(CLASSES)

    def retention_prompts(self) -> list[str]:
        """The retention prompts (empty: none named, FID reads the other classes' images)."""
        if self.retention is None:
            return []
        prompts = list(self.retention) if isinstance(self.retention, list) else read_prompts(self.retention)
        return prompts[:self.retention_limit]

    def prompt_of(self, name: str) -> str:
        if self.prompt is not None:
            return self.prompt.format(name)
        from ..datasets.world import describe

        return describe(name)


def read_prompts(path: str) -> list[str]:
    """Captions from a text file (one per line, blank lines skipped) or a CSV file with a `prompt` column."""
    file, text = read_user_text(path, "task.retention file", "a text file of captions (one per line) or a CSV "
                                                             "with a 'prompt' column")
    if file.suffix.lower() != ".csv":
        return [line.strip() for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "prompt" not in rows[0]:
        raise VismechError(f"task.retention file '{file}' has no 'prompt' column; columns: "
                           f"{', '.join(rows[0]) if rows else '(none)'}")
    return [r["prompt"].strip() for r in rows if (r["prompt"] or "").strip()]


class ConceptItems(Dataset):
    """Item id = class index * per_class + k: {"id", "label", "prompt"}; then one item per retention prompt (label
    -1). The benchmark seeds each from (run seed, id)."""

    def __init__(self, classes: list[str], prompts: list[str], per_class: int, limit: int | None = None,
                 retention: list[str] | None = None, target: str | None = None):
        if not classes:
            raise VismechError("the concept task needs at least one class prompt, got none")
        self.classes, self.prompts, self.per_class = list(classes), list(prompts), per_class
        self.retention = list(retention or [])
        self.class_items = len(classes) * per_class
        total = self.class_items + len(self.retention)
        self.size = total if limit is None else min(limit, total)
        # the target splits the items into the target's and the others': part of what the item set is
        self.target = target
        self.name = (f"concept/{len(classes)} prompts x {per_class} seeds"
                     + (f" + {len(self.retention)} retention prompts" if self.retention else "")
                     + (f", target '{target}'" if target else "")
                     + (f"[:{limit}]" if limit else ""))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if index >= self.class_items:
            return {"id": index, "label": -1, "prompt": self.retention[index - self.class_items]}
        label = index // self.per_class
        return {"id": index, "label": label, "prompt": self.prompts[label]}

    def digest(self) -> str:
        content = {"classes": self.classes, "prompts": self.prompts, "per_class": self.per_class, "size": self.size}
        if self.retention:
            content["retention"] = hashlib.sha256("\n".join(self.retention).encode()).hexdigest()
        if self.target:
            content["target"] = self.target
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def concept_goal(method, task_goal: str | None) -> str:
    """The direction the target's scores should move: a control follows the task; a method brings its own."""
    own = getattr(method, "goal", None)
    if method.control or own is None:
        return task_goal or own or "erase"
    if task_goal is not None and task_goal != own:
        raise VismechError(f"method '{method.name}' can only {own}, but task.goal is '{task_goal}'; "
                           f"set task.goal={own} or null")
    return own


@TASKS.register()
class ConceptBenchmark(GenerativeBenchmark):
    """Concept erasure / amplification: the judge's accuracy on the target's prompts and on every other's."""

    name = "concept"
    version = "2"
    protocol = ("per-class prompts x `per_class` per-item seeds, DDIM with CFG; the judge's top-1 on the target's "
                "prompts (target_accuracy, target_prob; direction by the method's goal) and on the others' "
                "(other_accuracy); CLIP-T on every image; KID and FID of the retention images (the retention "
                "prompts', else the other classes') against the judge's reference set")
    metric_names = ("target_accuracy", "target_prob", "other_accuracy", "clip_t", "kid", "precision", "recall", "fid")
    curve_x = "other_accuracy"  # the board's trade-off picture: the primary metric against this quality metric
    primary_metric = "target_accuracy"
    headline_rule = ("the best target_accuracy (by the method's goal) on the sweep's curve (interpolated item by item "
                     "between sweep points) where other_accuracy >= unedited - quality_budget, clip_t >= unedited - "
                     "clip_budget and kid <= unedited + kid_budget x |unedited kid|; never the unedited point but for "
                     "the no-op; else no point within budget")
    Config = ConceptConfig
    item_keys = ("per_class", "limit", "retention_limit", "fit.seeds", "fit.images")

    @classmethod
    def check_strength(cls, method, strength: float) -> float:
        return method.check_strength(strength)

    @classmethod
    def make_items(cls, task_cfg: ConceptConfig, subject):
        names = task_cfg.class_names()
        return ConceptItems(names, [task_cfg.prompt_of(n) for n in names], task_cfg.per_class, task_cfg.limit,
                            task_cfg.retention_prompts(), task_cfg.target)

    @classmethod
    def make_fit_data(cls, task_cfg: ConceptConfig, subject) -> ConceptData:
        fit = {"seeds": 16, "steps": 25, "guidance_scale": 3.0, "images": 0, "image_prompt": None,
               "image_guidance_scale": None, **task_cfg.fit}
        names = task_cfg.class_names()
        images, count = None, None
        if fit["images"] and task_cfg.classes is None:
            images = world_class_images(task_cfg.target, int(fit["images"]))
        elif fit["images"]:  # no image folder of the paper's classes: amplify generates that many itself
            count = int(fit["images"])
        template = fit["image_prompt"]
        guidance = fit["image_guidance_scale"]
        return ConceptData(task_cfg.prompt_of(task_cfg.target), seeds=tuple(range(int(fit["seeds"]))),
                           steps=int(fit["steps"]), guidance_scale=float(fit["guidance_scale"]), images=images,
                           image_prompt=template.format(task_cfg.target) if template else None, image_count=count,
                           image_guidance_scale=None if guidance is None else float(guidance),
                           others=tuple(task_cfg.prompt_of(n) for n in names if n != task_cfg.target),
                           label=task_cfg.target)

    def __init__(self, subject, method, finding, strengths, run_seed, task_cfg: ConceptConfig | None = None):
        task_cfg = task_cfg or ConceptConfig(name=self.name)
        self.goal = concept_goal(method, task_cfg.goal)
        self.target = task_cfg.class_names().index(task_cfg.target)
        self.attacks = ConceptAttacks(self, task_cfg)  # attack and related/far metrics, when the task asks for them
        cmmd = ("cmmd",) if load_judges(task_cfg.judges).cmmd_features is not None else ()
        self.metric_names = type(self).metric_names + cmmd + self.attacks.metric_names
        super().__init__(subject, method, finding, strengths, run_seed, task_cfg)
        names = task_cfg.class_names()
        missing = [n for n in names if n not in self.judges.classes]
        if missing:
            raise VismechError(f"the judge does not know class(es) {missing}; it knows: "
                               f"{', '.join(self.judges.classes[:20])}{'...' if len(self.judges.classes) > 20 else ''}")
        self.judge_index = torch.tensor([self.judges.classes.index(n) for n in names])
        self.has_retention = bool(task_cfg.retention_prompts())
        self.unedited = nn.ModuleDict({n: self.make_metric(n) for n in ("target_accuracy", "target_prob",
                                                                        "other_accuracy", "clip_t", "kid")})
        self.grid_ids = [c * task_cfg.per_class + k for c in range(len(names))
                         for k in range(min(GRID_SEEDS, task_cfg.per_class))]

    def reference_metrics(self) -> dict:
        return dict(self.unedited.items())

    def make_metric(self, name: str, **kwargs):
        if name in ("target_accuracy", "target_prob"):
            kwargs["direction"] = "lower" if self.goal == "erase" else "higher"
        if name in self.attacks.metric_names:
            kwargs["detail"] = self.attacks.detail(name)
        return super().make_metric(name, **kwargs)

    def judge(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class image: the judge's probabilities over all its classes and the index of the prompt's class;
        `labels` >= 0 only (retention images have no class to judge)."""
        probs = self.judges.classify(images).double().cpu() if len(labels) else torch.zeros(0, len(self.judges.classes),
                                                                                            dtype=torch.float64)
        return probs, self.judge_index[labels]

    def score(self, metrics, ids, labels, images) -> None:
        """The judge's scores of a batch's class images (retention images, label -1, are not judged)."""
        judged = labels >= 0
        ids, labels = ids[judged], labels[judged]
        probs, wanted = self.judge(images[judged], labels)
        on = labels == self.target
        if on.any():
            metrics["target_accuracy"].update(ids[on], probs[on], wanted[on])
            metrics["target_prob"].update(ids[on], probs[on], wanted[on])
        if (labels != self.target).any():
            metrics["other_accuracy"].update(ids[~on], probs[~on], wanted[~on])
        self.attacks.score_sides(metrics, ids, labels, correct(probs, wanted))

    def retained(self, labels: torch.Tensor) -> torch.Tensor:
        """Which images measure FID: the retention prompts' when the task has them, else the other classes'."""
        return labels < 0 if self.has_retention else (labels >= 0) & (labels != self.target)

    def quality(self, metrics, ids, text, kept, images) -> None:
        """CLIP-T of every image; KID, precision, recall and FID (those of them `metrics` holds) of the retention
        images."""
        metrics["clip_t"].update(ids, self.judges.encode_image(images), text)
        if kept.any():
            features = self.judges.features(images[kept]).double().cpu()
            for name in ("kid", "precision", "recall", "fid"):
                if name in metrics:
                    metrics[name].update(ids[kept], features)
            self.update_cmmd(metrics, ids[kept], images[kept])

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids, labels, prompts = batch["id"].cpu(), batch["label"].cpu(), list(batch["prompt"])
        unedited = self.images(ids.tolist(), prompts, None)
        self.score(self.unedited, ids, labels, unedited)
        text = self.judges.encode_text(prompts)
        kept = self.retained(labels)
        self.quality(self.unedited, ids, text, kept, unedited)
        for i in range(len(self.strengths)):
            images = unedited if self.is_identity(i) else self.images(ids.tolist(), prompts, i)
            metrics = self.point_metrics[i]
            self.score(metrics, ids, labels, images)
            self.quality(metrics, ids, text, kept, images)
            self.attacks.point_step(i, ids, labels, prompts, unedited, images)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.unedited_summary = {n: m.summarize() for n, m in self.unedited.items()}

    def headline(self) -> dict[str, Any]:
        unedited, cfg = {n: s["value"] for n, s in self.unedited_summary.items()}, self.task_cfg
        return self.matched_headline([Bound("other_accuracy", unedited["other_accuracy"] - cfg.quality_budget, "at least"),
                                      Bound("clip_t", unedited["clip_t"] - cfg.clip_budget, "at least"),
                                      Bound("kid", unedited["kid"] + cfg.kid_budget * abs(unedited["kid"]), "at most")])

    # --- pictures ----------------------------------------------------------------------------------------------

    def zeroed(self) -> list[int | None]:
        count = getattr(self.method, "zeroed", None)
        return [None if count is None else sum(count(self.finding, s).values()) for s in self.strengths]

    def artifacts(self) -> dict[str, Any]:
        names = self.task_cfg.class_names()
        prompts = [self.task_cfg.prompt_of(names[i // self.task_cfg.per_class]) for i in self.grid_ids]
        columns = [("unedited", self.images(self.grid_ids, prompts, None))] + [
            (f"{self.method.name} {s:g}", self.images(self.grid_ids, prompts, i)) for i, s in enumerate(self.strengths)]
        curve = {"strength": self.strengths, "zeroed_weights": self.zeroed(), "goal": self.goal,
                 "target": names[self.target], "headline_strength": self.headline_strength(),
                 "unedited": {n: s["value"] for n, s in self.unedited_summary.items()},
                 **{m: [s[m]["value"] for s in self.summaries] for m in self.metric_names}}
        return {"concept_grid": image_grid(columns, prompts, f"{self.method.name}: {self.goal} "
                                                              f"'{names[self.target]}'"),
                "concept_tradeoff": self.tradeoff_figure(curve), "concept_tradeoff_values": curve,
                **self.attacks.artifacts()}

    def tradeoff_figure(self, curve: dict[str, Any]) -> Figure:
        figure = Figure(figsize=(5, 3.6))
        ax = figure.subplots()
        ax.plot(curve["strength"], curve["target_accuracy"], "o-", label=f"target ({curve['target']}) accuracy")
        ax.plot(curve["strength"], curve["other_accuracy"], "s--", label="other classes' accuracy")
        ax.axhline(curve["unedited"]["other_accuracy"] - self.task_cfg.quality_budget, color="grey", lw=0.8,
                   ls=":", label="quality budget")
        ax.axvline(curve["headline_strength"], color="tab:red", lw=0.8, label="headline point")
        ax.set(xlabel=f"strength of {self.method.name}", ylabel="judge accuracy", ylim=(-0.02, 1.02),
               title=f"{self.goal} '{curve['target']}' on {self.subject.id}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        return figure

