"""The concept erasure under attack: the token attack recovers a concept a neutral prompt misses, the kept
paraphrases are rendered as their class on fresh seeds, and a concept run records attack success, related and far
side effects, the attacked prompts and their passes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from vismech.datasets.bias import Sampling
from vismech.datasets.paraphrases import CANDIDATES, check_unnamed, measured, paraphrases_of, read_paraphrases
from vismech.errors import VismechError

SAMPLING = Sampling(steps=15, eta=0.0, guidance_scale=4.0)  # the concept task's sampler


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))


def clopper_pearson_low(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided lower confidence bound of a binomial proportion (bisection on the tail)."""
    if k == 0:
        return 0.0
    lo, hi = 0.0, k / n
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binomial_tail(k, n, mid) < alpha else (lo, mid)
    return lo


def test_token_attack_recovers_sandal_from_the_empty_prompt_on_the_unedited_model():
    """The empty prompt draws whatever the model's unconditional branch draws (a sandal about one time in ten, the
    classes being balanced); 3 searched tokens in front of it, aimed at the world's sandal images, make sandals.
    Paired by seed, the exact sign test on the discordant seeds must reject 'the attack does not help' at 1 %."""
    from vismech.metrics.judges.world import world_judges
    from vismech.datasets.concepts import world_class_images
    from vismech.datasets.world import CLASSES
    from vismech.methods.attacks import TokenAttackConfig, judged_accuracy, token_attack
    from vismech.sampling import sample
    from vismech.zoo import sd_world

    n = 16
    subject, judges = sd_world.subject(), world_judges(reference_count=200)
    seeds = list(range(500, 500 + n))
    before = subject.cost.snapshot()
    attacked = token_attack(subject, [""] * n, world_class_images("sandal", n), seeds,
                            TokenAttackConfig(tokens=3, steps=30))
    after = subject.cost.snapshot()
    assert after["backward_passes"] - before["backward_passes"] == 30  # one batched pass per step
    assert after["forward_passes"] - before["forward_passes"] == 30
    assert all(len(a.tokens) == 3 and a.prompt == " ".join(a.tokens) for a in attacked)
    tokenizer = subject.pipeline.tokenizer
    for a in attacked:  # the prompt is text that re-encodes to exactly the searched tokens
        assert len(tokenizer(a.prompt, add_special_tokens=False)["input_ids"]) == 3
    label = torch.full((n,), CLASSES.index("sandal"))
    with torch.no_grad():
        plain = sample(subject, range(n), seeds, prompts=[""] * n, sampling=SAMPLING).images
        adv = sample(subject, range(n), seeds, prompts=[a.prompt for a in attacked], sampling=SAMPLING).images
    hit_plain, hit_adv = (judged_accuracy(x, label, judges.classify) for x in (plain, adv))
    gained, lost = int(((hit_adv == 1) & (hit_plain == 0)).sum()), int(((hit_adv == 0) & (hit_plain == 1)).sum())
    assert binomial_tail(gained, gained + lost, 0.5) < 0.01, (hit_plain.tolist(), hit_adv.tolist())


def test_kept_paraphrases_are_rendered_as_their_class_on_fresh_seeds():
    """Re-measure the kept paraphrases of the two classes with the most of them on 8 seeds the measurement never
    used: the pooled accuracy's one-sided 95 % Clopper-Pearson lower bound must exceed 0.2, twice the 0.1 that a
    prompt saying nothing of the class gets (the ten classes are balanced in the training data). The measurement
    kept prompts at >= 0.5 on its 8 seeds, so they regress towards their true rate on fresh ones."""
    from vismech.metrics.judges.world import world_judges
    from vismech.datasets.world import CLASSES
    from vismech.methods.attacks import render_accuracy
    from vismech.seeding import item_seed
    from vismech.zoo import sd_world

    table = measured()
    assert table["keep_at_least"] == 0.5 and table["seeds"] == 8
    counts = table["kept_counts"]
    assert counts == {c: len(table["kept"][c]) for c in CLASSES}
    assert all(r["accuracy"] >= 0.5 for rows in table["kept"].values() for r in rows)
    assert all(len(table["candidates"][c]) == len(CANDIDATES[c]) for c in CLASSES)
    chosen = sorted(CLASSES, key=lambda c: -counts[c])[:2]
    prompts = [(c, r["prompt"]) for c in chosen for r in table["kept"][c]]
    assert prompts, "no class kept a paraphrase"
    seeds = [item_seed(19_001, k) for k in range(8)]
    subject = sd_world.subject()
    assert table["weights_digest"] == subject.weights_digest
    accuracy = render_accuracy(subject, [p for _, p in prompts], [CLASSES.index(c) for c, _ in prompts], seeds,
                               SAMPLING, world_judges(reference_count=200).classify)
    hits, n = round(float(accuracy.sum()) * len(seeds)), len(prompts) * len(seeds)
    assert clopper_pearson_low(hits, n) > 0.2, (prompts, accuracy.tolist())


def test_paraphrases_never_name_their_class(tmp_path):
    for name, prompts in CANDIDATES.items():
        for p in prompts:
            check_unnamed(name, p)
    with pytest.raises(VismechError, match="contains its name's word"):
        check_unnamed("coat", "an overcoat")
    with pytest.raises(VismechError, match=r"\['boot'\]"):
        check_unnamed("ankle boot", "a leather boot")
    check_unnamed("t-shirt", "a tee with a thin strap")  # 't' only as a word of its own
    csv = tmp_path / "p.csv"
    csv.write_text("class,prompt\nchurch,a building with a steeple\nchurch,\nparachute,a canopy for skydiving\n")
    assert read_paraphrases(csv) == {"church": ["a building with a steeple"], "parachute": ["a canopy for skydiving"]}
    assert paraphrases_of("church", csv) == ["a building with a steeple"]
    with pytest.raises(VismechError, match="no paraphrases of 'tench'"):
        paraphrases_of("tench", csv)
    bad = tmp_path / "bad.csv"
    bad.write_text("class,prompt\nchurch,a church spire\n")
    with pytest.raises(VismechError, match="'a church spire' of class 'church' contains"):
        read_paraphrases(bad)
    with pytest.raises(VismechError, match="does not exist"):
        read_paraphrases(tmp_path / "missing.csv")


FAST = ["model=sd_world", "task=concept", "task.per_class=2", "task.fit.seeds=2", "task.fit.steps=5",
        "task.fit.images=4", "task.sampling.steps=4", "task.judges.reference_count=200", "task.related=3",
        "task.attack={steps:3,tokens:2}"]


def test_concept_run_records_attacks_related_and_far_and_caches_the_attacked_prompts(workspace):
    from vismech.datasets.world import CLASSES
    from vismech.zoo import clip_world

    assert workspace.run(*FAST, "method=noop", "task.strengths=[0.0,1.0]") == 0
    record = workspace.records()[0]
    points = [p["metrics"] for p in record["sweep"]]
    sandal, per_class = CLASSES.index("sandal"), 2
    text = clip_world.load().encode_text([clip_world.describe(c) for c in CLASSES])
    cosine = (text @ text[sandal]).tolist()
    nearest = sorted(sorted((c for c in CLASSES if c != "sandal"), key=lambda c: -cosine[CLASSES.index(c)])[:3],
                     key=CLASSES.index)
    for metrics in points:
        assert metrics["asr_tokens"]["item_ids"] == metrics["asr_paraphrase"]["item_ids"] == [10, 11]
        assert metrics["asr_tokens"]["direction"] == "lower"
        related = metrics["related_accuracy"]["fingerprint_items"]["detail"]["related"]
        assert related == nearest  # in class order
        near = {CLASSES.index(c) for c in related}
        expected_near = [i for i in range(20) if i // per_class in near]
        assert metrics["related_accuracy"]["item_ids"] == expected_near
        assert metrics["far_accuracy"]["item_ids"] == [i for i in range(20) if i // per_class not in near | {sandal}]
        plain = metrics["target_accuracy"]["item_values"]  # per_class 2: every target item is attacked
        for name in ("asr_tokens", "asr_paraphrase"):  # the plain prompt's successes count after an attack too
            assert all(a >= t for a, t in zip(metrics[name]["item_values"], plain))
        other = metrics["other_accuracy"]
        by_id = dict(zip(other["item_ids"], other["item_values"]))
        assert metrics["related_accuracy"]["item_values"] == [by_id[i] for i in expected_near]
    # the no-op's two points are the unedited model: one attack, its second point read from the cache
    assert record["cost"]["backward_passes"] == 3
    assert points[0]["asr_tokens"]["item_values"] == points[1]["asr_tokens"]["item_values"]
    run = next((workspace.root / "runs" / "concept" / "noop").iterdir())
    saved = json.loads((run / "concept_attacks.json").read_text())
    assert saved["computed_here"] == {"forward_passes": 3, "backward_passes": 3, "attacked_prompts": 2}
    rows = saved["points"][1]["items"]
    assert [r["id"] for r in rows] == [10, 11] and all(r["prompt"].endswith("a sandal") for r in rows)
    assert all(len(r["tokens"]) == 2 and r["paraphrase"] in paraphrases_of("sandal") for r in rows)


@pytest.mark.parametrize("change, match", [
    ({"attack": {"step": 3}}, r"unknown task.attack key\(s\) \['step'\]; known: lr, paraphrases, per_class"),
    ({"attack": {"steps": 0}}, "task.attack.steps must be an integer >= 1, got 0"),
    ({"attack": {"lr": -1.0}}, "task.attack.lr must be > 0, got -1.0"),
    ({"attack": {"per_class": 0}}, "task.attack.per_class must be an integer >= 1 or null, got 0"),
    ({"attack": "yes"}, "task.attack must be a mapping of attack settings or null, got 'yes'"),
    ({"related": 9}, r"task.related must be an integer in \[0, 8\]"),
])
def test_bad_attack_config_names_the_value(change, match):
    from vismech.benchmarks.concept import ConceptConfig

    with pytest.raises(VismechError, match=match):
        ConceptConfig(name="concept", **change).validate()
