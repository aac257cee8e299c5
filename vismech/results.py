"""Result records: one JSON per run, validated against a versioned schema (pydantic), written atomically."""
from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import VismechError
from .io import atomic_write_text
from .stats import TRANSFORMS, Estimate, fraction_jackknife_estimate, mean_estimate, pseudo_estimate

SCHEMA_VERSION = 2  # 2: intervals may be absent (with a note), set-level pseudo-values, interpolated headlines
LIBRARIES = ("vismech", "torch", "torchvision", "lightning", "torchmetrics", "timm", "diffusers", "transformers",
             "open_clip_torch", "torch-fidelity", "safetensors", "numpy", "hydra-core", "pydantic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricResult(_Strict):
    """One metric at one sweep point: its estimate and interval (vismech.stats), and what pairs it with another
    record on the same items: per-item values, or a set-level statistic's jackknife pseudo-values."""

    name: str
    value: float
    ci_low: float | None  # None where no honest interval exists at this n; `ci_note` says why
    ci_high: float | None
    ci_level: float = Field(gt=0, lt=1)
    ci_method: str = "t"
    ci_note: str | None = None
    n: int = Field(ge=1)
    direction: Literal["higher", "lower"]
    units: str
    fingerprint: str
    fingerprint_items: dict[str, Any]
    item_ids: list[int] | None = None  # the items, in id order
    item_values: list[float] | None = None  # per-item metrics: one value per item
    pseudo_values: list[float] | None = None  # set-level metrics: one per jackknife group (vismech.stats)
    plugin_value: float | None = None  # set-level metrics: the statistic as the papers compute it on all items
    transform: Literal["identity", "sqrt"] = "identity"  # value = transform(mean of the pseudo-values)

    @model_validator(mode="after")
    def _consistent(self) -> "MetricResult":
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError(f"metric '{self.name}': ci_low and ci_high come together")
        if self.ci_low is None and not self.ci_note:
            raise ValueError(f"metric '{self.name}': a metric without an interval says why (ci_note)")
        if self.ci_low is not None and not self.ci_low <= self.value <= self.ci_high:
            raise ValueError(f"metric '{self.name}': value {self.value} lies outside its CI [{self.ci_low}, {self.ci_high}]")
        if self.item_values is not None and self.item_ids is None:
            raise ValueError(f"metric '{self.name}': item_values need their item_ids")
        if self.item_values is not None and self.pseudo_values is not None:
            raise ValueError(f"metric '{self.name}': per-item values and pseudo-values exclude each other")
        if self.item_ids is not None and len(self.item_ids) != self.n:
            raise ValueError(f"metric '{self.name}': n={self.n} but {len(self.item_ids)} ids")
        if self.item_values is not None and len(self.item_values) != self.n:
            raise ValueError(f"metric '{self.name}': n={self.n} but {len(self.item_values)} values")
        return self

    def paired_values(self) -> list[float] | None:
        """What a paired comparison with another record on the same items reads: item or pseudo-values."""
        return self.item_values if self.item_values is not None else self.pseudo_values


def format_estimate(m: MetricResult, digits: int = 4) -> str:
    """`value [low, high]`, or the value and "(no interval)" where none is honest."""
    if m.ci_low is None:
        return f"{m.value:.{digits}f} (no interval)"
    return f"{m.value:.{digits}f} [{m.ci_low:.{digits}f}, {m.ci_high:.{digits}f}]"


class SweepPoint(_Strict):
    strength: float
    metrics: dict[str, MetricResult]


class MethodInfo(_Strict):
    name: str
    source: str  # "vismech" or the distribution of a plugin
    control: bool
    config: dict[str, Any]
    config_digest: str
    finding_digest: str
    # digest of the source of the method's modules, and a plugin's distribution and version (None: built in);
    # optional, so records made before they were kept still validate
    code_digest: str | None = None
    distribution: str | None = None
    distribution_version: str | None = None


class SubjectInfo(_Strict):
    id: str
    track: Literal["mini", "paper"]
    weights_digest: str
    source: str


class ItemSet(_Strict):
    name: str
    size: int = Field(ge=1)
    digest: str  # hash of the item ids (and their content where it matters)


class Seeds(_Strict):
    run_seed: int
    scheme: str  # how each item's seed is derived


class Cost(_Strict):
    """What the result cost. Passes count the fit too, as recorded when the finding was made, also when this run
    loaded the finding from the store (`fit_reused`); `wall_time_s` is this run's own time."""

    wall_time_s: float = Field(ge=0)
    fit_time_s: float = Field(ge=0)
    fit_reused: bool
    fit_forward_passes: int = Field(ge=0)
    fit_backward_passes: int = Field(ge=0)
    forward_passes: int = Field(ge=0)
    forward_rows: int = Field(ge=0)
    backward_passes: int = Field(ge=0)
    peak_memory_mb: float = Field(ge=0)
    device: str
    world_size: int = Field(ge=1)
    # test batches loaded from a killed run's progress files instead of computed (their passes are counted above)
    resumed_batches: int = Field(default=0, ge=0)


class Provenance(_Strict):
    git_commit: str
    git_dirty: bool
    libraries: dict[str, str]
    python: str
    platform: str
    created: str
    kind: Literal["reproduced", "reported"] = "reproduced"  # "reported": copied from a paper, not run here


class Headline(_Strict):
    """The point a method is ranked at. A trade-off task reads it off the sweep's piecewise-linear curve at its
    quality budget: `between` names the two sweep points and `weight` the share of the second, and `metrics` holds
    every metric interpolated there. `status` "no point within budget": no edited point meets the budget."""

    strength: float
    rule: str  # how the headline point was chosen from the sweep
    status: Literal["sweep point", "interpolated", "no point within budget"] = "sweep point"
    between: tuple[float, float] | None = None
    weight: float | None = Field(default=None, ge=0, le=1)
    metrics: dict[str, MetricResult] | None = None


class ResultRecord(_Strict):
    schema_version: Literal[2] = SCHEMA_VERSION
    task: str
    benchmark_version: str
    primary_metric: str
    protocol: str
    method: MethodInfo
    subject: SubjectInfo
    items: ItemSet
    seeds: Seeds
    sweep: list[SweepPoint] = Field(min_length=1)
    headline: Headline
    cost: Cost
    provenance: Provenance
    config: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> "ResultRecord":
        strengths = [p.strength for p in self.sweep]
        if len(set(strengths)) != len(strengths):
            raise ValueError(f"sweep has repeated strengths: {strengths}")
        h = self.headline
        if h.status == "sweep point" and h.strength not in strengths:
            raise ValueError(f"headline strength {h.strength} is not in the sweep {strengths}")
        if h.status == "interpolated" and (h.between is None or h.weight is None or h.metrics is None
                                           or not set(h.between) <= set(strengths)):
            raise ValueError(f"interpolated headline needs two sweep strengths of {strengths}, a weight and metrics")
        for point in self.sweep:
            if self.primary_metric not in point.metrics:
                raise ValueError(f"primary metric '{self.primary_metric}' missing at strength {point.strength}")
        return self

    def headline_point(self) -> SweepPoint | None:
        """The metrics the record is ranked by; None when no point is within the task's budget."""
        if self.headline.status == "no point within budget":
            return None
        if self.headline.metrics is not None:
            return SweepPoint(strength=self.headline.strength, metrics=self.headline.metrics)
        return next(p for p in self.sweep if p.strength == self.headline.strength)

    def fingerprints(self) -> dict[str, str]:
        return {name: m.fingerprint for name, m in sorted(self.sweep[0].metrics.items())}

    def task_digest(self) -> str:
        """Hash of the task config that made the record, but its batch size (values do not depend on it): runs of one
        method that differ in the task (another target, depth, sweep or item range) are different records."""
        task = {k: v for k, v in (self.config.get("task") or {}).items() if k != "batch_size"}
        return hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()

    def file_name(self) -> str:
        return (f"{self.method.name}--{self.method.config_digest[:10]}--task{self.task_digest()[:8]}"
                f"--seed{self.seeds.run_seed}.json")

    def relative_path(self) -> Path:
        return Path(self.subject.track) / self.task / self.subject.id / self.file_name()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> Provenance:
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = version(lib)
        except PackageNotFoundError:
            continue
    commit = _git("rev-parse", "HEAD") or "unknown"
    # results and the leaderboard are outputs, not code: a run that rewrites them does not make the code dirty
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results",
                      ":(top,exclude)leaderboard.md"))
    return Provenance(git_commit=commit, git_dirty=dirty, libraries=libs, python=platform.python_version(),
                      platform=platform.platform(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_record(record: ResultRecord, results_dir: str | Path) -> Path:
    path = Path(results_dir) / record.relative_path()
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")
    return path


# What a repeat of a run may change without changing its result: when and where it ran, how long it took, whether
# the fit came from the cache. Pass counts are not here: they do not drift with the machine.
CIRCUMSTANCES = {"provenance": ("created", "git_commit", "git_dirty", "platform"),
                 "cost": ("wall_time_s", "fit_time_s", "peak_memory_mb", "fit_reused", "resumed_batches", "device")}
# The files that decide a run's numbers; a commit that changes only others (docs, tests, records) changes none
CODE_PATHS = (":(top)vismech", ":(top)configs", ":(top)pyproject.toml", ":(top)constraints.txt")


def _measured(record: ResultRecord) -> dict:
    data = record.model_dump()
    for part, keys in CIRCUMSTANCES.items():
        for key in keys:
            data[part].pop(key)
    return data


def same_code(old: Provenance, new: Provenance) -> bool:
    """Whether the code that made `old` is the code running now (library versions are compared with the rest of the
    record): the same clean commit, or a clean commit whose code files equal this checkout's."""
    if old.git_dirty:
        return False  # uncommitted code: nothing says what it was
    if old.git_commit == new.git_commit and not new.git_dirty:
        return True
    if "unknown" in (old.git_commit, new.git_commit):
        return False
    return _git("diff", "--quiet", old.git_commit, "--", *CODE_PATHS) is not None  # exit 1 on a difference


def same_result(old: ResultRecord, new: ResultRecord) -> bool:
    """True when `new` repeats `old`: the same measured values, config, subject, items, seeds, pass counts, library
    versions and code, whatever the time stamps, timings and machine."""
    return _measured(old) == _measured(new) and same_code(old.provenance, new.provenance)


def save_record(record: ResultRecord, results_dir: str | Path) -> tuple[Path, bool]:
    """Write the record unless the file there already holds the same result (`same_result`); returns the path and
    whether it was written. A repeat leaves the file as it was, byte for byte, so an unchanged checkout stays clean
    and a verification tied to the file's bytes keeps holding."""
    path = Path(results_dir) / record.relative_path()
    if path.is_file():
        try:
            old = load_record(path)
        except VismechError:
            old = None  # a broken or older file is replaced
        if old is not None and same_result(old, record):
            return path, False
    return write_record(record, results_dir), True


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(record)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def load_record(path: str | Path) -> ResultRecord:
    """Parse and validate a record; any problem is one VismechError naming the file and the first bad field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise VismechError(f"result record '{path}' does not exist") from None
    except IsADirectoryError:
        raise VismechError(f"result record '{path}' is a folder; give a record file (*.json)") from None
    except OSError as exc:
        raise VismechError(f"result record '{path}' cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VismechError(f"result record '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise VismechError(f"result record '{path}' must be a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise VismechError(f"result record '{path}' has schema_version {data.get('schema_version')!r}; "
                           f"this vismech reads {SCHEMA_VERSION}")
    try:
        record = ResultRecord.model_validate(data)
    except ValidationError as exc:
        raise VismechError(f"result record '{path}' is invalid: {_first_error(exc)}") from None
    problem = summary_mismatch(record)
    if problem:
        raise VismechError(f"result record '{path}' does not match its own items: {problem}")
    return record


# a summary recomputed from the same item values differs from the stored one by float noise at most
SUMMARY_TOLERANCE = 1e-9


def summary_mismatch(record: ResultRecord) -> str | None:
    """The first metric whose stored summary its own values do not give, or None.

    A per-item metric's value and interval are what `stats.mean_estimate` gives on its item values, and a
    jackknifed set-level metric's what `stats.pseudo_estimate` gives on its pseudo-values: the calls the metrics'
    `summarize` makes, so a record cannot claim numbers its items do not hold. A set-level metric with another
    interval (FD's score interval, made from rows the record does not keep) must be finite and inside it."""
    points = [(f"at strength {p.strength:g}", p.metrics) for p in record.sweep]
    if record.headline.metrics is not None:
        points.append(("at the headline", record.headline.metrics))
    for at, metrics in points:
        for name, m in metrics.items():
            where = f"metric '{name}' {at}"
            bounds = [v for v in (m.value, m.ci_low, m.ci_high) if v is not None]
            if not all(math.isfinite(v) for v in bounds):
                return f"{where} has a non-finite value or interval bound"
            values = m.paired_values()
            if values is not None and not all(math.isfinite(v) for v in values):
                return f"{where} has a non-finite item value"
            if m.item_values is not None:
                recomputed = mean_estimate(m.item_values, m.ci_level)
            elif m.pseudo_values is not None and m.ci_method == "jackknife-t":
                recomputed = pseudo_estimate(m.pseudo_values, TRANSFORMS[m.transform], m.ci_level)
            elif m.pseudo_values is not None and m.ci_method == "jackknife-se" and m.plugin_value is not None:
                recomputed = fraction_jackknife_estimate(m.plugin_value, m.pseudo_values, m.ci_level)
            else:
                continue
            problem = _differs(m, recomputed, len(values))
            if problem:
                return f"{where} {problem}"
    return None


def _differs(m: MetricResult, recomputed: Estimate, count: int) -> str | None:
    for label, stored, again in (("value", m.value, recomputed.value), ("ci_low", m.ci_low, recomputed.low),
                                 ("ci_high", m.ci_high, recomputed.high)):
        if (stored is None) != (again is None) or (
                stored is not None and not math.isclose(stored, again, rel_tol=SUMMARY_TOLERANCE,
                                                        abs_tol=SUMMARY_TOLERANCE)):
            return f"stores {label} {stored!r}, but its {count} values give {again!r}"
    return None


def record_files(folder: str | Path) -> list[Path]:
    """Every record file under the folder; `vismech verify`'s outcomes beside them are not records."""
    return [p for p in sorted(Path(folder).rglob("*.json")) if not p.name.endswith(".verification.json")]


def expand_record_paths(paths: list[str | Path]) -> list[Path]:
    """Record paths as given, with each folder replaced by the records under it (one error if it holds none)."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            inside = record_files(given)
            if not inside:
                raise VismechError(f"folder '{given}' holds no result record (*.json); give records or a folder "
                                   f"of them")
            found += inside
        else:
            found.append(given)
    return found


def load_records(results_dir: str | Path) -> list[tuple[Path, ResultRecord]]:
    """Every record under the folder, each validated (summaries recomputed from its items)."""
    return [(p, load_record(p)) for p in record_files(results_dir)]
