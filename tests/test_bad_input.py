"""Bad input, one table: every row is a user error that must print exactly one line naming the value and what is
allowed, exit with code 2, and leave the results, cache, leaderboard and runs trees as they were (no record, no
temporary file, no progress, no new cache entry, no run folder of logs). A second table injects faults of the
machine (a full disk, a read-only folder) at a chosen write: one line naming the path, exit 2, nothing half
written."""
from __future__ import annotations

import re

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from records import record
from safetensors.torch import load_file, save_file

from vismech import cli
from vismech.methods.controls import NoOp
from vismech.registry import METHODS
from vismech.results import write_record

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "vismech" / "zoo" / "weights" / "vit_world" / "model.safetensors"
PATH_RECORD = next((REPO / "results" / "mini" / "neuron_path" / "vit_world").glob("activation_path--*[0-9].json"))


class NanFit(NoOp):
    """Test method whose fit gives NaN scores, as a broken plugin would."""

    name = "nan_fit"
    control = False

    def fit(self, subject, data):
        return self.new_finding(subject, task="*", tensors={"scores": torch.tensor([1.0, float("nan")])})


@pytest.fixture()
def nan_method(monkeypatch):
    METHODS.names()
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    METHODS.add(NanFit.name, NanFit, source="nan-fit-dist")


def _edited(path: Path, target: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2))


def _jas(data: dict) -> dict:
    return data["sweep"][0]["metrics"]["jas"]


def _raise_summary(data: dict) -> None:
    for key in ("value", "ci_low", "ci_high"):
        _jas(data)[key] += 0.1


class Payload:
    """Unpickling it would create the marker file: a checkpoint that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Bad files, made once: each row names the ones it gives the command."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "a_file").write_text("a regular file: nothing can be created under it, not even by root")
    whole = SHIPPED.read_bytes()
    (d / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    save_file({"weight": torch.zeros(3, 3)}, str(d / "other_arch.safetensors"))
    tensors = load_file(str(SHIPPED))
    tensors["head.bias"] = torch.full_like(tensors["head.bias"], float("nan"))
    save_file(tensors, str(d / "nan_output.safetensors"))
    for name in ("evil.pt", "evil.pth"):  # a torch checkpoint whose unpickling would run Path.touch
        torch.save({"model": {"x": Payload(d / f"executed_{name}")}}, d / name)
    (d / "empty_folder").mkdir()
    good = json.loads(record().model_dump_json())
    bad = json.loads(json.dumps(good))
    bad["sweep"] = []
    (d / "no_sweep.json").write_text(json.dumps(bad))
    bad = json.loads(json.dumps(good))
    bad["cost"]["forward_passes"] = -1
    (d / "negative_cost.json").write_text(json.dumps(bad))
    board = d / "board_results"
    write_record(record("fine"), board)
    (board / "mini" / "t" / "s" / "broken.json").write_text('{"schema_version": 1, "task": "t"')
    # the committed activation-path record with its jas value and interval raised by 0.1, items left alone
    tampered = d / "tampered_results" / PATH_RECORD.relative_to(REPO / "results")
    _edited(PATH_RECORD, tampered, _raise_summary)
    (d / "tampered.json").write_text(tampered.read_text())
    _edited(PATH_RECORD, d / "tampered_ci.json", lambda r: _jas(r).update(ci_high=_jas(r)["ci_high"] + 0.1))
    _edited(PATH_RECORD, d / "tampered_item.json", lambda r: _jas(r)["item_values"].__setitem__(0, 0.5))
    _edited(PATH_RECORD, d / "nan_value.json", lambda r: _jas(r).update(value=float("nan")))
    _edited(PATH_RECORD, d / "old_schema.json", lambda r: r.update(schema_version=0))
    _edited(PATH_RECORD, d / "reported.json", lambda r: r["provenance"].update(kind="reported"))
    _edited(PATH_RECORD, d / "target.json",
            lambda r: r["config"]["model"].update(params={"weights": {"_target_": "os.system"}}))
    _edited(PATH_RECORD, d / "items_without_values.json", lambda r: _jas(r).pop("item_ids"))
    (d / "verify_folder").mkdir()
    (d / "verify_folder" / "a_good.json").write_text(PATH_RECORD.read_text())  # read first, never re-run
    (d / "verify_folder" / "reported.json").write_text((d / "reported.json").read_text())
    (d / "array.json").write_text("[1, 2]")
    (d / "not_json.json").write_text("results: yes")
    write_record(record("fine"), d / "fine_results")
    dup = d / "duplicate_results"
    write_record(record("twin"), dup)
    (dup / "mini" / "t" / "s" / "copy.json").write_text(record("twin").model_dump_json())
    return d


def _known(names) -> str:
    return ", ".join(names)


# (row id, command line with {inputs}/{root} placeholders, substrings the one line must hold: the value and what is
# allowed)
RUN = "run"
ROWS = [
    # names
    ("unknown task", [RUN, "task=nope"], ["'nope'", "known tasks: ", "neuron_path", "pruning"]),
    ("unknown method", [RUN, "method=nope"], ["'nope'", "known methods: " + _known(cli.group_options("method"))]),
    ("unknown model", [RUN, "model=nope"], ["'nope'", "known models: ", "vit_world"]),
    ("unknown logger", [RUN, "logger=nope"], ["'nope'", "known loggers: csv, wandb"]),
    ("unknown trainer", [RUN, "trainer=nope"], ["'nope'", "known trainers: cpu, gpu"]),
    ("unknown experiment", [RUN, "experiment=nope"], ["'nope'", "known experiments: ", "mini"]),
    ("unknown task key", [RUN, "task.foo=3"], ["'task.foo'", "+task.foo=3"]),
    ("unknown method key", [RUN, "method=neuron_path", "method.config.nope=3"], ["'method.config.nope'"]),
    ("method of another task", [RUN, "task=pruning", "method=uce"], ["'uce'", "does not support task 'pruning'",
                                                                     "it supports: concept"]),
    ("unknown command", ["frobnicate"], ["'frobnicate'", "known commands: cache, leaderboard, list, run"]),
    ("unknown cache action", ["cache", "frob"], ["'frob'", "choose from 'ls', 'gc'"]),
    ("unknown zoo action", ["zoo", "frob"], ["vismech zoo build [NAME ...] | vismech zoo ls"]),
    ("unknown leaderboard option", ["leaderboard", "--bogus"], ["--bogus", "unrecognized arguments"]),
    # values and ranges
    ("strength above the method's range", [RUN, "method=random_path", "task.strengths=[0.5,2.5]"],
     ["got 2.5", "must be in [0, 2]"]),
    ("mask fraction below 0", [RUN, "task=pruning", "task.strengths=[-0.1]"], ["got -0.1", "must be in [0, 1]"]),
    ("strength NaN", [RUN, "task.strengths=[nan]"], ["got nan", "must be a finite number"]),
    ("empty sweep", [RUN, "task.strengths=[]"], ["task.strengths is empty", "e.g. task.strengths=[1.0]"]),
    ("limit 0", [RUN, "task.limit=0"], ["got 0", "task.limit must be >= 1 or null"]),
    ("limit not a number", [RUN, "task.limit=abc"], ["'abc'", "must be int | None"]),
    ("batch size 0", [RUN, "task.batch_size=0"], ["got 0", "task.batch_size must be >= 1"]),
    ("fit images per class 0", [RUN, "task=pruning", "task.fit_per_class=0"], ["got 0", "must be >= 1"]),
    ("draws 0", [RUN, "method=random_path", "method.config.draws=0"], ["got 0", "draws must be >= 1"]),
    ("top_k 0", [RUN, "method=neuron_path", "method.config.top_k=0"], ["got 0", "top_k must be >= 1"]),
    ("seed not an integer", [RUN, "seed=1.5"], ["got 1.5", "seed must be an integer"]),
    ("unclosed list", [RUN, "task.strengths=[0,0.5"], ["'[0,0.5'", "bad override"]),
    ("devices 0", [RUN, "trainer.devices=0"], ["devices=0", "not a valid input"]),
    ("unknown strategy", [RUN, "trainer.strategy=nope"], ["strategy='nope'", "choices: auto, ddp"]),
    ("unknown accelerator", [RUN, "trainer.accelerator=banana"], ["accelerator='banana'",
                                                                    "Available names are: auto, "]),
    # files
    ("missing weights (mini)", [RUN, "model.params.weights={inputs}/none.safetensors"],
     ["none.safetensors' does not exist", "expected a .safetensors file"]),
    ("missing weights (paper)", [RUN, "model=vit_b16", "model.params.weights=/nowhere/vit.safetensors"],
     ["'/nowhere/vit.safetensors' does not exist", "expected a .safetensors file"]),
    ("weights folder without weights", [RUN, "model=vit_b16", "model.params.weights={inputs}/empty_folder"],
     ["empty_folder' holds none of model.safetensors, pytorch_model.bin", "expected a .safetensors file"]),
    ("truncated safetensors", [RUN, "model.params.weights={inputs}/truncated.safetensors"],
     ["truncated.safetensors' is not a readable safetensors file"]),
    ("checkpoint of another architecture", [RUN, "model.params.weights={inputs}/other_arch.safetensors"],
     ["other_arch.safetensors' does not fit vit_world", "vit_tiny_patch16_224"]),
    ("pickle as mini checkpoint", [RUN, "model.params.weights={inputs}/evil.pt"],
     ["evil.pt' must be .safetensors", "pickle checkpoints are refused"]),
    ("pickle as paper checkpoint", [RUN, "model=vit_b16", "model.params.weights={inputs}/evil.pth"],
     ["evil.pth' is not a loadable", "expected a .safetensors file, a weights-only torch state dict"]),
    ("images for a model without preprocessing", [RUN, "task.images={inputs}/empty_folder"],
     ["'vit_world' has no input_transform", "e.g. model=vit_b16"]),
    ("NaN in the model's output", [RUN, "model.params.weights={inputs}/nan_output.safetensors"],
     ["'vit_world' produced a non-finite output (NaN or inf)", "check its weights"]),
    # records
    ("record without sweep", ["validate", "{inputs}/no_sweep.json"],
     ["no_sweep.json' is invalid", "sweep: List should have at least 1 item"]),
    ("record with negative cost", ["validate", "{inputs}/negative_cost.json"],
     ["negative_cost.json' is invalid", "cost.forward_passes: Input should be greater than or equal to 0"]),
    ("no record to validate", ["validate"], ["validate needs at least one RECORD.json"]),
    ("malformed record on the leaderboard", ["leaderboard", "--results", "{inputs}/board_results",
                                             "--out", "{root}/lb.md"], ["broken.json' is not valid JSON"]),
    ("missing results folder", ["leaderboard", "--results", "{root}/none", "--out", "{root}/lb.md"],
     ["'{root}/none' does not exist", "give the folder of result records"]),
    ("verify a missing record", ["verify", "{root}/missing.json"], ["missing.json' does not exist"]),
    ("verify --limit 0", ["verify", "--limit", "0", "{root}/missing.json"], ["got 0", "--limit must be >= 1"]),
    ("cache gc --older-than -1", ["cache", "gc", "--older-than", "-1", "--dir", "{root}/cache"],
     ["got -1.0", "--older-than must be >= 0 days"]),
    # output folders: under a regular file nothing can be created, whoever runs the test
    ("results folder under a file", [RUN, "paths.results_dir={inputs}/a_file/results"],
     ["paths.results_dir='{inputs}/a_file/results'", "is a file; give a writable folder"]),
    ("cache folder under a file", [RUN, "paths.cache_dir={inputs}/a_file/cache"],
     ["paths.cache_dir='{inputs}/a_file/cache'", "is a file; give a writable folder"]),
    ("leaderboard under a file", ["leaderboard", "--results", "{inputs}/empty_folder", "--out",
                                  "{inputs}/a_file/lb.md"], ["'{inputs}/a_file'", "give a writable folder"]),
    # a summary its own items do not give (issue: the tamper case, refused by validate, verify and the board)
    ("tampered summary: validate", ["validate", "{inputs}/tampered.json"],
     ["metric 'jas' at strength 0", "stores value", "64 values give"]),
    ("tampered summary: verify", ["verify", "{inputs}/tampered.json"], ["does not match its own items", "'jas'"]),
    ("tampered summary: verify --limit 8", ["verify", "--limit", "8", "{inputs}/tampered.json"],
     ["does not match its own items", "'jas'"]),
    ("tampered summary: leaderboard", ["leaderboard", "--results", "{inputs}/tampered_results", "--out",
                                       "{root}/lb.md"], ["does not match its own items", "'jas'"]),
    ("tampered summary in the results of a run", [RUN, "task.limit=2", "paths.results_dir={inputs}/tampered_results"],
     ["does not match its own items", "'jas'"]),
    ("tampered interval only", ["validate", "{inputs}/tampered_ci.json"], ["'jas'", "stores ci_high"]),
    ("tampered item value", ["validate", "{inputs}/tampered_item.json"], ["'jas'", "stores value"]),
    ("NaN summary", ["validate", "{inputs}/nan_value.json"], ["jas", "lies outside its CI"]),
    ("item values without ids", ["validate", "{inputs}/items_without_values.json"],
     ["item_values need their item_ids"]),
    ("record of another schema", ["validate", "{inputs}/old_schema.json"], ["has schema_version 0", "reads 2"]),
    ("record that is a JSON array", ["validate", "{inputs}/array.json"], ["must be a JSON object, got list"]),
    ("record that is not JSON", ["validate", "{inputs}/not_json.json"], ["not_json.json' is not valid JSON"]),
    ("validate an empty folder", ["validate", "{inputs}/empty_folder"], ["holds no result record",
                                                                         "give records or a folder"]),
    ("validate a folder with a broken record", ["validate", "{inputs}/board_results"],
     ["broken.json' is not valid JSON"]),
    ("verify an empty folder", ["verify", "{inputs}/empty_folder"], ["holds no result record"]),
    ("verify a folder with a broken record", ["verify", "{inputs}/board_results"], ["broken.json' is not valid JSON"]),
    ("verify a folder holding a reported record", ["verify", "{inputs}/verify_folder"],
     ["reported.json' holds numbers reported by a paper"]),
    ("verify a reported record", ["verify", "{inputs}/reported.json"], ["reported by a paper", "no run to repeat"]),
    ("verify a record that asks to instantiate", ["verify", "{inputs}/target.json"],
     ["asks to instantiate 'os.system'", "records are data"]),
    ("verify --limit not a number", ["verify", "--limit", "abc", "{inputs}/tampered.json"],
     ["--limit: invalid int value: 'abc'"]),
    ("verify without a record", ["verify"], ["arguments are required: RECORD.json|FOLDER"]),
    ("leaderboard of duplicate records", ["leaderboard", "--results", "{inputs}/duplicate_results", "--out",
                                          "{root}/lb.md"], ["are the same run; keep one"]),
    ("leaderboard of a file", ["leaderboard", "--results", "{inputs}/a_file", "--out", "{root}/lb.md"],
     ["does not exist", "give the folder of result records"]),
    ("unknown list section", ["list", "nope"], ["'nope'", "known list sections: methods, metrics"]),
    ("unknown zoo model", ["zoo", "build", "nope"], ["'nope'", "known mini models: ", "vit_world"]),
    ("cache folder that is a file", ["cache", "ls", "--dir", "{inputs}/a_file"], ["a_file' is a file",
                                                                                    "give the cache folder"]),
    # values known before any work: refused before Hydra makes a run folder
    ("negative seed", [RUN, "seed=-1"], ["got -1", "seed must be in [0, 2**63-1]"]),
    ("seed beyond 2**63-1", [RUN, "seed=9223372036854775808"], ["seed must be in [0, 2**63-1]"]),
    ("seed a word", [RUN, "seed=abc"], ["'abc'", "seed must be an integer"]),
    ("seed a boolean", [RUN, "seed=true"], ["True", "seed must be an integer"]),
    ("repeated strengths", [RUN, "task.strengths=[0,0]"], ["task.strengths repeats 0", "give each strength once"]),
    ("repeated strengths among others", [RUN, "method=random_path", "task.strengths=[1,0.5,1]"],
     ["task.strengths repeats 1", "give each strength once"]),
    ("repeated mask fractions", [RUN, "task=pruning", "task.strengths=[0.5,0.5]"], ["task.strengths repeats 0.5"]),
    ("strength infinite", [RUN, "method=random_path", "task.strengths=[inf]"], ["got inf",
                                                                               "must be a finite number"]),
    ("limit negative", [RUN, "task.limit=-3"], ["got -3", "task.limit must be >= 1 or null"]),
    ("batch size negative", [RUN, "task.batch_size=-1"], ["got -1", "task.batch_size must be >= 1"]),
    ("strengths not a list", [RUN, "task.strengths=abc"], ["'abc'", "must be list"]),
    ("empty weights path", [RUN, "model.params.weights=''"], ["model.params.weights is an empty string",
                                                             "give a path or null"]),
    ("blank weights path", [RUN, "model.params.weights='  '"], ["model.params.weights is an empty string"]),
    ("empty weights path (paper)", [RUN, "model=vit_b16", "model.params.weights=''"],
     ["model.params.weights is an empty string"]),
    ("top_k 0 of the pruning variant", [RUN, "task=pruning", "method=activation_path", "method.config.top_k=0"],
     ["got 0", "top_k must be >= 1"]),
    ("Riemann steps 0", [RUN, "method=neuron_path", "method.config.m=0"], ["got 0", "m must be >= 1"]),
    ("unknown JAS form", [RUN, "method=neuron_path", "method.config.jas_form=nope"], ["'nope'", "jas_form"]),
    ("unknown token scope", [RUN, "method=neuron_path", "method.config.token_scope=nope"], ["'nope'",
                                                                                            "token_scope"]),
    ("unknown candidate scoring", [RUN, "method=neuron_path", "method.config.candidate_scoring=nope"],
     ["'nope'", "candidate_scoring"]),
    ("candidates below top_k", [RUN, "method=neuron_path", "method.config.top_k=3", "method.config.candidates=2",
                                "method.config.candidate_scoring=isolated"],
     ["got 2", "candidates must be >= 3"]),
    ("pruning depth 0", [RUN, "task=pruning", "task.depth=0"], ["got 0", "task.depth must be >= 1 or null"]),
    ("pruning images per class negative", [RUN, "task=pruning", "task.fit_per_class=-2"], ["got -2", "must be >= 1"]),
    ("bias ids not a range", [RUN, "task=bias", "model=ddpm_world", "method=noop", "task.ids=[1,2,3]"],
     ["task.ids must be [start, stop)", "[1, 2, 3]"]),
    ("bias unknown attribute", [RUN, "task=bias", "model=ddpm_world", "method=noop", "task.attribute=nope"],
     ["'nope'", "unknown task.attribute"]),
    ("bias unknown labeler", [RUN, "task=bias", "model=ddpm_world", "method=noop", "task.labeler=nope"],
     ["'nope'", "unknown task.labeler"]),
    ("bias target of the wrong length", [RUN, "task=bias", "model=ddpm_world", "method=noop", "task.target=[1.0]"],
     ["task.target must hold one probability per class", "[1.0]"]),
    ("bias unknown fit key", [RUN, "task=bias", "model=ddpm_world", "method=noop", "+task.fit.nope=1"],
     ["unknown task.fit key(s) ['nope']"]),
    ("concept retention limit 0", [RUN, "task=concept", "model=sd_world", "method=noop", "task.retention_limit=0"],
     ["got 0", "task.retention_limit must be >= 1 or null"]),
    ("concept unknown target", [RUN, "task=concept", "model=sd_world", "method=noop", "task.target=nope"],
     ["'nope'", "unknown task.target"]),
    ("concept images per class 0", [RUN, "task=concept", "model=sd_world", "method=noop", "task.per_class=0"],
     ["got 0", "task.per_class must be >= 1"]),
    # results folder health, checked before any work
    ("malformed record elsewhere in the results", [RUN, "seed=3", "paths.results_dir={inputs}/board_results"],
     ["broken.json' is not valid JSON"]),
    ("duplicate records in the results", [RUN, "paths.results_dir={inputs}/duplicate_results"],
     ["are the same run; keep one"]),
    ("runs folder under a file", [RUN, "paths.runs_dir={inputs}/a_file/runs"],
     ["paths.runs_dir='{inputs}/a_file/runs'", "is a file; give a writable folder"]),
    ("leaderboard of a run under a file", [RUN, "paths.leaderboard={inputs}/a_file/lb.md"],
     ["paths.leaderboard='{inputs}/a_file'", "give a writable folder"]),
    # values the subject decides: refused after it loads, before the fit (no finding, no run folder)
    ("top_k beyond the layer width", [RUN, "method=activation_path", "method.config.top_k=1000"],
     ["got 1000", "top_k must be at most the 256 FFN units per layer of 'vit_world'"]),
    ("candidates beyond the layer width", [RUN, "method=neuron_path", "method.config.candidates=1000"],
     ["got 1000", "candidates must be at most the 256 FFN units"]),
    ("pruning depth beyond the model", [RUN, "task=pruning", "task.depth=99"],
     ["got 99", "task.depth must be at most the 6 FFN layers of 'vit_world'"]),
    ("a plugin whose fit gives NaN", [RUN, "method=nan_fit", "task.limit=2"],
     ["method 'nan_fit' produced a finding with non-finite values", "scores", "it was not stored"]),
]
AFTER_FIT = {"NaN in the model's output"}  # fails while evaluating: the finding made before it is whole and kept
NEEDS = {"a plugin whose fit gives NaN": "nan_method"}


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() and fsync() say it: no file named


def _read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


# (row id, command line, what to replace, by what, substrings of the one line, trees that must not change)
FAULTS = [
    ("full disk writing a leaderboard", ["leaderboard", "--results", "{inputs}/fine_results", "--out", "{root}/lb.md"],
     "vismech.io.os.fsync", _no_space, ["cannot write '{root}/lb.md'", "No space left on device", "free space"]),
    ("read-only folder of a leaderboard", ["leaderboard", "--results", "{inputs}/fine_results", "--out",
                                           "{root}/lb.md"], "vismech.io.atomic_write_bytes", _read_only,
     ["cannot write '{root}/lb.md'", "Read-only file system", "give a writable folder"]),
    ("full disk at a run's first batch", [RUN, "task.limit=2", "task.batch_size=2"], "vismech.io.os.fsync", _no_space,
     ["cannot write '{root}/cache/progress/", "No space left on device"]),
    ("read-only results folder at the record", [RUN, "trial=false", "task.limit=2", "task.batch_size=2"],
     "vismech.results.atomic_write_text", _read_only, ["cannot write '{root}/results/mini/neuron_path/vit_world/noop--",
                                                        "Read-only file system"]),
    ("read-only cache folder storing a finding", [RUN, "trial=false", "method=random_path", "task.limit=2"],
     "vismech.store.atomic_directory",
     _read_only, ["cannot write '{root}/cache/findings/", "Read-only file system"]),
]


def _files(root: Path) -> set[str]:
    """Every file and folder under `root` (results, cache, leaderboard, runs, anything else)."""
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*")}


def _fill(text: str, inputs: Path, root: Path) -> str:
    return text.replace("{inputs}", str(inputs)).replace("{root}", str(root))


def test_the_tables_are_large_enough():
    assert len(ROWS) + len(FAULTS) >= 100 and len({r[0] for r in ROWS + FAULTS}) == len(ROWS) + len(FAULTS)


@pytest.mark.parametrize("argv, expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_no_output(workspace, inputs, capsys, argv, expected, request):
    row = request.node.callspec.id
    if row in NEEDS:
        request.getfixturevalue(NEEDS[row])
    root = workspace.root
    argv = [_fill(a, inputs, root) for a in argv]
    if argv[0] == RUN:
        paths = [p for p in workspace.paths() if p.split("=")[0] not in {a.split("=")[0] for a in argv}]
        argv = [*argv, *paths]
    before, inputs_before = _files(root), _files(inputs)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vismech: error: ")
    for text in expected:
        assert _fill(text, inputs, root) in lines[0], lines[0]
    changed = _files(root) ^ before
    if row in AFTER_FIT:
        changed = {p for p in changed if p != "cache/" and not p.startswith("cache/findings")}
    assert changed == set(), changed
    assert _files(inputs) == inputs_before
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert not (root / "cache" / "progress").exists() or not any((root / "cache" / "progress").rglob("*.safetensors"))
    # a pickle offered as a checkpoint is refused before anything unpickles it
    assert not list(inputs.glob("executed_*"))


@pytest.mark.parametrize("argv, target, fault, expected", [r[1:] for r in FAULTS], ids=[r[0] for r in FAULTS])
def test_a_full_disk_or_read_only_folder_is_one_line_exit_2(workspace, inputs, capsys, monkeypatch, argv, target,
                                                           fault, expected):
    """Nothing half written: no record, board, run folder or temporary; whole findings and finished batches may
    stay (a re-run once there is room resumes from them)."""
    root = workspace.root
    argv = [_fill(a, inputs, root) for a in argv]
    if argv[0] == RUN:
        argv = [*argv, *workspace.paths()]
    before = {p for p in _files(root) if not p.startswith("cache")}
    monkeypatch.setattr(target, fault)
    assert cli.main(argv) == 2
    # a fault after the work started follows that work's progress lines (vismech.progress: "<loop>: done/total ...")
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.strip() and not re.match(r"^[\w ]+: (\d+/\d+|stopped at) ", line)]
    assert len(lines) == 1 and lines[0].startswith("vismech: error: "), lines
    for text in expected:
        assert _fill(text, inputs, root) in lines[0], lines[0]
    assert {p for p in _files(root) if not p.startswith("cache")} == before
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_nan_output_is_one_line_on_the_real_stderr(workspace, inputs):
    """The in-process table cannot see what Lightning and the libraries print; a real process can."""
    proc = subprocess.run([sys.executable, "-m", "vismech.cli", "run", "task.limit=4",
                           f"model.params.weights={inputs / 'nan_output.safetensors'}", *workspace.paths()],
                          cwd=workspace.root, env={**os.environ, "CI": "true"}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "vismech: error: subject 'vit_world' produced a non-finite output (NaN or inf); check its weights"]
    assert "Traceback" not in proc.stdout
    assert not workspace.results.exists()


def test_the_pickle_rows_would_run_code_if_unpickled(tmp_path):
    """The marker check above can fail: loading such a file with pickle allowed does run the payload."""
    marker = tmp_path / "executed"
    torch.save({"model": {"x": Payload(marker)}}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()
