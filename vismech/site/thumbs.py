"""The item browser's images: a record's generated images, read back from the generation cache by their keys.

The site shows a spread of `count` items of each generative record at every sweep point, each beside the unedited
image of the same seed, as small PNG thumbnails named by their cache key. Thumbnails once made are kept: a build
without the cache takes them from the site it replaces, so a site committed with its thumbnails stays fresh on a
machine that never generated an image. A record some of whose images are in neither place gets no browser."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..results import ResultRecord

THUMB_SIZE = 64  # pixels, the longer side; the mini world's images are smaller and keep their size


@dataclass(frozen=True)
class Shot:
    item: int
    prompt: str
    edited: str  # thumbnail file names
    unedited: str
    label: str  # the judge's verdict on the edited image, from the record's per-item values ("" if none)


def spread(ids: list[int], count: int) -> list[int]:
    """`count` ids evenly spread over the sorted ids (every class of a concept item set, not only the first)."""
    ids = sorted(ids)
    if len(ids) <= count:
        return ids
    return [ids[(k * len(ids)) // count] for k in range(count)]


def judge_labels(record: ResultRecord, strength: float) -> dict[int, str]:
    """Per item, what the judge said of its image at `strength`, from the record's own per-item values: the
    class whose share counts the image (bias), or whether the judge saw the prompt's class (concept)."""
    point = next(p for p in record.sweep if p.strength == strength)
    labels: dict[int, str] = {}
    for name, m in sorted(point.metrics.items()):
        if m.item_ids is None:
            continue
        if name.startswith("share_"):
            for i, v in zip(m.item_ids, m.item_values):
                if v == 1.0:
                    labels[i] = f"judge: {name[len('share_'):]}"
        elif name in ("target_accuracy", "other_accuracy"):
            for i, v in zip(m.item_ids, m.item_values):
                labels[i] = "judge: the prompt's class" if v == 1.0 else "judge: another class"
    return labels


def png(image) -> bytes:
    """A (3, H, W) float image in [0, 1] as PNG bytes, at most THUMB_SIZE pixels on its longer side."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array, "RGB")
    if max(picture.size) > THUMB_SIZE:
        scale = THUMB_SIZE / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _keys(record: ResultRecord, cache_dir: Path, count: int):
    """(items, prompts, {strength: edited keys}, unedited keys) of a generative record, or None when its subject
    cannot be loaded here or is not the record's (other weights)."""
    from ..benchmarks.generative import UNEDITED, image_keys, image_producer
    from ..config import typed_config
    from ..errors import VismechError
    from ..methods.controls import NoOp
    from ..registry import METHODS, MODELS, TASKS
    from ..seeding import item_seed

    task = TASKS.get(record.task)
    try:
        task_cfg = typed_config(task.Config, record.config["task"], f"task '{task.name}'")
        subject = MODELS.get(record.config["model"]["name"])(**(record.config["model"].get("params") or {}))
    except (VismechError, KeyError, OSError):
        return None
    if subject.weights_digest != record.subject.weights_digest:
        return None
    items = task.make_items(task_cfg, subject)
    rows = {int(items[k]["id"]): items[k].get("prompt") or "" for k in range(len(items))}
    ids = spread(list(rows), count)
    prompts = [rows[i] for i in ids] if subject.conditional else None
    seeds = [item_seed(record.seeds.run_seed, i) for i in ids]
    sampling = task_cfg.sampler()
    method = METHODS.get(record.method.name)
    unedited = image_keys(subject, UNEDITED, "", 0.0, sampling, prompts, seeds, image_producer(subject))
    edited = {}
    for point in record.sweep:
        # the images of an identity edit are the unedited ones (see vismech.benchmarks.generative)
        identity = point.strength == method.identity_strength or issubclass(method, NoOp)
        edited[point.strength] = unedited if identity else image_keys(
            subject, record.method.name, record.method.finding_digest, point.strength, sampling, prompts, seeds,
            image_producer(subject, method))
    return ids, [rows[i] for i in ids], edited, unedited


def browse(record: ResultRecord, cache_dir: Path | None, previous: Path | None, count: int,
           put: Callable[[str, bytes], None]) -> dict[float, list[Shot]] | None:
    """Per strength, the shots of the record's item spread; thumbnails go through `put(file name, bytes)`.
    None when any image is neither in the cache nor among the `previous` site's thumbnails."""
    from ..benchmarks.generative import GenerativeBenchmark
    from ..generations import GenerationCache
    from ..registry import TASKS

    if record.task not in TASKS or not issubclass(TASKS.get(record.task), GenerativeBenchmark):
        return None
    cache = GenerationCache(cache_dir) if cache_dir is not None and (Path(cache_dir) / "generations").is_dir() else None
    found = _keys(record, Path(cache_dir), count) if cache is not None else None
    if found is None:
        return _from_previous(record, previous, put)
    ids, prompts, edited, unedited = found
    made: dict[str, bytes] = {}
    for key in sorted({k for keys in edited.values() for k in keys} | set(unedited)):
        name = thumb_name(key)
        image = cache.get(key)
        if image is not None:
            made[name] = png(image)
        elif previous is not None and (previous / name).is_file():
            made[name] = (previous / name).read_bytes()
        else:
            return None
    for name, data in made.items():
        put(name, data)
    sheet = {s: [Shot(i, p, thumb_name(e), thumb_name(u), judge_labels(record, s).get(i, ""))
                 for i, p, e, u in zip(ids, prompts, keys, unedited)] for s, keys in edited.items()}
    put(sheet_name(record), _sheet_json(record, sheet))
    return sheet


def thumb_name(key: str) -> str:
    return f"img/thumbs/{key[:24]}.png"


def sheet_name(record: ResultRecord) -> str:
    """The record's browser index: which thumbnails show which item, so a build without the cache can rebuild it."""
    return f"img/thumbs/{record.relative_path().as_posix().replace('/', '--')[:-len('.json')]}.sheet.json"


def _made_from(record: ResultRecord) -> dict[str, str]:
    return {"weights": record.subject.weights_digest, "finding": record.method.finding_digest,
            "items": record.items.digest, "seed": str(record.seeds.run_seed)}


def _sheet_json(record: ResultRecord, sheet: dict[float, list[Shot]]) -> bytes:
    import json
    from dataclasses import asdict

    points = [{"strength": s, "shots": [asdict(x) for x in shots]} for s, shots in sorted(sheet.items())]
    return (json.dumps({"made_from": _made_from(record), "points": points}, indent=1, sort_keys=True) + "\n").encode()


def _from_previous(record: ResultRecord, previous: Path | None, put) -> dict[float, list[Shot]] | None:
    """The browser a previous build made from the cache, when its sheet and every thumbnail are still there and its
    strengths are still the record's."""
    import json

    if previous is None:
        return None
    path = previous / sheet_name(record)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    sheet = {entry["strength"]: [Shot(**x) for x in entry["shots"]] for entry in data["points"]}
    if data["made_from"] != _made_from(record) or sorted(sheet) != sorted(p.strength for p in record.sweep):
        return None
    names = {n for shots in sheet.values() for x in shots for n in (x.edited, x.unedited)}
    if not all((previous / n).is_file() for n in names):
        return None
    for name in sorted(names):
        put(name, (previous / name).read_bytes())
    put(sheet_name(record), path.read_bytes())
    return sheet
