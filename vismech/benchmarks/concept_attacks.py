"""The concept task's erasure under attack and its side effects split into related and far classes.

`task.attack` (an erase only; null: off) adds, at every sweep point, on the target's items (the first
`attack.per_class` of its seeds, null: all), with each item's own seed:
- `asr_paraphrase`: per item 1 when the judge's top-1 is the target on the plain prompt's image or on a
  paraphrase's (item k of the target takes paraphrase k mod P): prompts that describe the target without naming it
  (vismech.datasets.paraphrases; mini: the list measured on the unedited sd_world, paper: `attack.paraphrases`, a
  file by path). An attacker keeps the plain prompt where it already works, as UnlearnDiffAtk counts its
  pre-attack successes, so success after an attack is never below `target_accuracy`;
- `asr_tokens`: the same with the plain prompt with `attack.tokens` adversarial tokens in front, searched against
  the edited model at that point towards the item's unedited image (vismech.methods.attacks: discrete tokens,
  `attack.steps` steps, seeded by the item). The attacked prompts are cached under a content key (the edited and the
  unedited images' generation keys and the attack's settings), written atomically, and saved with the run in
  `concept_attacks.json`; their UNet passes are in the record's cost when they are computed.
Before any attack the success rate is `target_accuracy` (the plain prompt).

`task.related` = k > 0 splits `other_accuracy` into `related_accuracy` (the k classes whose prompts the judges'
CLIP text tower embeds nearest to the target's prompt, cosine) and `far_accuracy` (the rest).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..errors import VismechError
from ..metrics.classification import correct
from ..io import atomic_write_json
from ..store import content_key

ATTACK_KEYS = {"paraphrases", "tokens", "steps", "lr", "seed", "per_class"}
ATTACK_METRICS = ("asr_paraphrase", "asr_tokens")
SIDE_METRICS = ("related_accuracy", "far_accuracy")
RELATION = "cosine of the judges' CLIP text embeddings of the class prompts"


def check_attack(attack: dict[str, Any] | None) -> None:
    if attack is None:
        return
    if not isinstance(attack, dict):
        raise VismechError(f"task.attack must be a mapping of attack settings or null, got {attack!r}")
    unknown = set(attack) - ATTACK_KEYS
    if unknown:
        raise VismechError(f"unknown task.attack key(s) {sorted(unknown)}; known: {', '.join(sorted(ATTACK_KEYS))}")
    limit = attack.get("per_class")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise VismechError(f"task.attack.per_class must be an integer >= 1 or null, got {limit!r}")
    token_config(attack).validate()


def token_config(attack: dict[str, Any]):
    from ..methods.attacks import TokenAttackConfig

    return TokenAttackConfig(**{k: attack[k] for k in ("tokens", "steps", "lr", "seed") if k in attack})


class ConceptAttacks:
    """What the concept benchmark delegates to: which extra metrics it has, their updates, and the artifact."""

    def __init__(self, bench, task_cfg):
        self.bench, self.cfg = bench, task_cfg
        self.on = task_cfg.attack is not None and bench.goal == "erase"
        self.metric_names = (SIDE_METRICS if task_cfg.related else ()) + (ATTACK_METRICS if self.on else ())
        names = task_cfg.class_names()
        self.paraphrases: list[str] = []
        self.related = torch.zeros(0, dtype=torch.long)
        self.related_names: list[str] = []
        if self.on:
            from ..datasets.paraphrases import paraphrases_of

            self.tokens = token_config(task_cfg.attack)
            self.limit = task_cfg.attack.get("per_class")
            self.paraphrases = paraphrases_of(task_cfg.target, task_cfg.attack.get("paraphrases"))
        self.rows: dict[int, dict[int, dict[str, Any]]] = {}  # point -> item id -> attacked prompt and loss
        self.passes: dict[str, int] = {"forward_passes": 0, "backward_passes": 0, "attacked_prompts": 0}
        self._names = names

    # --- metrics ---------------------------------------------------------------------------------------------------

    def relate(self) -> None:
        """The k classes nearest the target by the judges' CLIP text embeddings of the class prompts."""
        if self.related_names or not self.cfg.related:
            return
        prompts = [self.cfg.prompt_of(n) for n in self._names]
        text = self.bench.judges.encode_text(prompts).double().cpu()
        similarity = text @ text[self.bench.target]
        similarity[self.bench.target] = -float("inf")
        order = similarity.argsort(descending=True)[:self.cfg.related]
        self.related = order.sort().values
        self.related_names = [self._names[i] for i in self.related.tolist()]

    def detail(self, name: str) -> dict[str, Any]:
        if name in SIDE_METRICS:
            self.relate()
            return {"relation": RELATION, "k": self.cfg.related, "related": self.related_names}
        detail = {"attack": "paraphrase" if name == "asr_paraphrase" else "tokens", "per_class": self.limit}
        if name == "asr_paraphrase":
            return {**detail, "paraphrases": self.paraphrases}
        return {**detail, **self.tokens.as_dict()}

    def score_sides(self, metrics, ids: torch.Tensor, labels: torch.Tensor, correct: torch.Tensor) -> None:
        if "related_accuracy" not in metrics:
            return
        near = torch.isin(labels, self.related)
        far = (labels != self.bench.target) & ~near
        if near.any():
            metrics["related_accuracy"].update(ids[near], correct[near])
        if far.any():
            metrics["far_accuracy"].update(ids[far], correct[far])

    # --- the attacks ----------------------------------------------------------------------------------------------

    def attacked_ids(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Which of a batch's rows are attacked: the target's items, its first `per_class` seeds."""
        first = self.bench.target * self.cfg.per_class
        chosen = labels == self.bench.target
        if self.limit is not None:
            chosen &= ids < first + self.limit
        return chosen

    def point_step(self, point: int, ids: torch.Tensor, labels: torch.Tensor, prompts: list[str],
                   unedited: torch.Tensor, images: torch.Tensor) -> None:
        """Attack the batch's target items at sweep point `point`; `images` are the point's plain-prompt images."""
        if not self.on:
            return
        chosen = self.attacked_ids(ids, labels)
        if not chosen.any():
            return
        bench = self.bench
        plain_hit = correct(*bench.judge(images[chosen], labels[chosen]))
        ids, labels, targets = ids[chosen], labels[chosen], unedited[chosen]
        plain = [p for p, c in zip(prompts, chosen.tolist()) if c]
        first = bench.target * self.cfg.per_class
        paraphrased = [self.paraphrases[(int(i) - first) % len(self.paraphrases)] for i in ids]
        metrics = bench.point_metrics[point]
        # an attacker keeps the plain prompt where it already works: success after an attack is either one's
        hit = correct(*bench.judge(bench.images(ids.tolist(), paraphrased, point), labels))
        metrics["asr_paraphrase"].update(ids, torch.maximum(plain_hit, hit))
        attacked = self.attacked(point, ids, plain, targets)
        hit = correct(*bench.judge(bench.images(ids.tolist(), attacked, point), labels))
        metrics["asr_tokens"].update(ids, torch.maximum(plain_hit, hit))

    def key(self, edited: str, unedited: str) -> str:
        return content_key(kind="token_attack", edited=edited, target=unedited, attack=self.tokens.as_dict())

    def path(self, key: str) -> Path | None:
        root = self.bench.cache_dir
        return None if root is None else Path(root) / "attacks" / key[:2] / f"{key}.json"

    def attacked(self, point: int, ids: torch.Tensor, prompts: list[str], targets: torch.Tensor) -> list[str]:
        """The attacked prompt of each item at `point`, from the cache where it is, else searched now (the misses
        together, under the point's edit)."""
        from ..methods.attacks import token_attack

        bench, id_list = self.bench, ids.tolist()
        keys = [self.key(e, u) for e, u in zip(bench.keys(id_list, prompts, point), bench.keys(id_list, prompts, None))]
        found: dict[int, dict[str, Any]] = {}
        for k, key in enumerate(keys):
            path = self.path(key)
            if path is not None and path.is_file():
                found[k] = json.loads(path.read_text())
        todo = [k for k in range(len(keys)) if k not in found]
        if todo:
            before = bench.subject.cost.snapshot()
            edit = bench.edit(point)
            with edit if edit is not None else nullcontext():
                results = token_attack(bench.subject, [prompts[k] for k in todo], targets[todo],
                                       bench.seeds([id_list[k] for k in todo]), self.tokens)
            after = bench.subject.cost.snapshot()
            for name in ("forward_passes", "backward_passes"):
                self.passes[name] += after[name] - before[name]
            self.passes["attacked_prompts"] += len(todo)
            for k, result in zip(todo, results):
                found[k] = {"prompt": result.prompt, "tokens": result.tokens, "plain": prompts[k],
                            "loss_first": result.loss_first, "loss_last": result.loss_last}
                path = self.path(keys[k])
                if path is not None:
                    atomic_write_json(path, found[k])
        rows = self.rows.setdefault(point, {})
        for k, i in enumerate(id_list):
            rows[i] = found[k]
        return [found[k]["prompt"] for k in range(len(keys))]

    def artifacts(self) -> dict[str, Any]:
        if not self.on:
            return {}
        bench = self.bench
        first = bench.target * self.cfg.per_class
        points = [{"strength": s, "items": [{"id": i, "seed": bench.seeds([i])[0],
                                             "paraphrase": self.paraphrases[(i - first) % len(self.paraphrases)],
                                             **row} for i, row in sorted(self.rows.get(p, {}).items())]}
                  for p, s in enumerate(bench.strengths)]
        return {"concept_attacks": {"target": self._names[bench.target], "attack": self.tokens.as_dict(),
                                    "paraphrases": self.paraphrases, "computed_here": self.passes,
                                    "points": points}}
