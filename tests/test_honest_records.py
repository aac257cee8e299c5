"""Records that cannot claim what their items do not hold, verifications bound to what was measured, and caches
that follow the code that made them."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from records import record

from vismech import cli
from vismech.registry import METHODS
from vismech.results import load_record, summary_mismatch, write_record
from vismech.verification_file import (MetricCheck, Verification, load_verification, measured_digest,
                                       verification_path, write_verification)

REPO = Path(__file__).resolve().parents[1]
PATH_RECORD = next((REPO / "results" / "mini" / "neuron_path" / "vit_world").glob("activation_path--*[0-9].json"))


def _tampered(tmp_path: Path, shift: float = 0.1) -> Path:
    """The committed activation-path record with its jas value and interval raised, its items left as they are."""
    data = json.loads(PATH_RECORD.read_text())
    jas = data["sweep"][0]["metrics"]["jas"]
    for key in ("value", "ci_low", "ci_high"):
        jas[key] += shift
    path = tmp_path / "results" / PATH_RECORD.relative_to(REPO / "results")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def test_committed_record_summaries_are_what_their_items_give():
    assert summary_mismatch(load_record(PATH_RECORD)) is None


def test_a_summary_its_items_do_not_give_is_refused_naming_the_metric(tmp_path):
    path = _tampered(tmp_path)
    with pytest.raises(Exception) as caught:
        load_record(path)
    message = str(caught.value)
    assert "metric 'jas' at strength" in message and "stores value" in message and "64 values give" in message


def test_a_shift_below_float_noise_is_not_a_mismatch(tmp_path):
    path = _tampered(tmp_path, shift=1e-13)
    assert load_record(path).sweep[0].metrics["jas"].n == 64


@pytest.mark.parametrize("argv", [["validate", "{path}"], ["verify", "{path}"], ["verify", "--limit", "8", "{path}"],
                                  ["leaderboard", "--results", "{results}", "--out", "{board}"]],
                         ids=["validate", "verify", "verify --limit", "leaderboard"])
def test_the_tamper_case_is_refused_in_one_line(tmp_path, capsys, argv):
    path = _tampered(tmp_path)
    board = tmp_path / "lb.md"
    argv = [a.format(path=path, results=tmp_path / "results", board=board) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metric 'jas'" in err[0] and "does not match its own items" in err[0]
    assert not board.exists() and not verification_path(path).exists()


def _verification(rec, items="all", passed=True) -> Verification:
    return Verification(record_file="r.json", measured_digest=measured_digest(rec), passed=passed, items=items,
                        skipped=[], checks=[MetricCheck(strength=1.0, metric="score", claimed=0.25, ci_low=0.1,
                                                        ci_high=0.4, rerun=0.25, max_item_difference=0.0,
                                                        passed=passed)],
                        git_commit="c" * 40, device="cpu", created="2026-01-01T00:00:00+00:00")


def test_measured_digest_ignores_time_stamps_and_timings_but_not_values_config_or_code():
    base = record()
    data = json.loads(base.model_dump_json())
    data["provenance"]["created"] = "2027-05-05T00:00:00+00:00"
    data["cost"].update(wall_time_s=99.0, fit_time_s=7.0, peak_memory_mb=3.0, fit_reused=True, resumed_batches=2)
    assert measured_digest(type(base).model_validate(data)) == measured_digest(base)
    assert measured_digest(record(values=(0.1, 0.2, 0.3, 0.5))) != measured_digest(base)
    for section, key, value in (("config", "task", {"limit": 8}), ("provenance", "git_commit", "d" * 40),
                                ("cost", "forward_passes", 3)):
        changed = json.loads(base.model_dump_json())
        changed[section][key] = value
        assert measured_digest(type(base).model_validate(changed)) != measured_digest(base), key
    changed = json.loads(base.model_dump_json())
    changed["method"]["code_digest"] = "e" * 64
    assert measured_digest(type(base).model_validate(changed)) != measured_digest(base)


def test_a_rewritten_identical_record_keeps_its_verification_and_a_changed_one_loses_it(tmp_path):
    rec = record()
    path = write_record(rec, tmp_path)
    assert write_verification(path, rec, _verification(rec))
    data = json.loads(path.read_text())
    data["provenance"]["created"], data["cost"]["wall_time_s"] = "2030-01-01T00:00:00+00:00", 12.5
    path.write_text(json.dumps(data, indent=4))  # other bytes, same measurement
    assert load_verification(path).items == "all"
    other = record(values=(0.1, 0.2, 0.3, 0.5))
    write_record(other, tmp_path)
    assert load_verification(path) is None


def test_a_partial_verification_never_replaces_a_full_one(tmp_path):
    rec = record()
    path = write_record(rec, tmp_path)
    assert write_verification(path, rec, _verification(rec))
    before = verification_path(path).read_bytes()
    for passed in (True, False):
        assert not write_verification(path, rec, _verification(rec, items="first 2", passed=passed))
        assert verification_path(path).read_bytes() == before
    # a partial one of a record without a full verification is kept, and a full one replaces it
    other = record("other")
    path = write_record(other, tmp_path)
    assert write_verification(path, other, _verification(other, items="first 2"))
    assert write_verification(path, other, _verification(other))
    assert load_verification(path).items == "all"


def test_a_verification_made_for_the_exact_bytes_still_counts_until_rewritten(tmp_path):
    """Files written before measured digests name the record's sha256; they bind those bytes only."""
    import hashlib

    rec = record()
    path = write_record(rec, tmp_path)
    legacy = _verification(rec).model_copy(update={"measured_digest": None,
                                                   "record_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    verification_path(path).write_text(legacy.model_dump_json())
    assert load_verification(path) is not None
    path.write_text(path.read_text() + " ")
    assert load_verification(path) is None


def test_verify_and_validate_take_a_folder(tmp_path, capsys):
    for name in ("a", "b"):
        write_record(record(name), tmp_path / "results")
    assert cli.main(["validate", str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out.count(": valid (schema") == 2


# --- caches keyed by code -----------------------------------------------------------------------------------------

METHOD_SOURCE = '''
from vismech.methods.controls import NoOp


class CodeProbe(NoOp):
    """Test method whose fit is edited between runs."""

    name = "code_probe"
    control = False

    def fit(self, subject, data):
        return self.new_finding(subject, task="*", meta={{"value": {value}}})
'''


@pytest.fixture()
def code_probe(tmp_path, monkeypatch):
    """A method in a module of its own, in a temporary folder: its source can be edited between runs."""
    import importlib

    folder = tmp_path / "plugin"
    folder.mkdir()
    module = folder / "code_probe_method.py"
    module.write_text(textwrap.dedent(METHOD_SOURCE.format(value="1.0")))
    monkeypatch.syspath_prepend(str(folder))
    METHODS.names()
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    cls = importlib.import_module("code_probe_method").CodeProbe
    METHODS.add(cls.name, cls, source="code-probe-dist")
    yield module
    monkeypatch.delitem(__import__("sys").modules, "code_probe_method")


def _probe_record(workspace) -> tuple[bool, dict]:
    [rec] = [r for r in workspace.records() if r["method"]["name"] == "code_probe"]
    return rec["cost"]["fit_reused"], rec["method"]


def test_a_changed_method_module_is_fitted_again(workspace, code_probe):
    args = ("method=code_probe", "task.limit=2", "task.batch_size=2")
    assert workspace.run(*args) == 0
    reused, info = _probe_record(workspace)
    assert not reused and info["distribution"] == "code-probe-dist" and info["distribution_version"] is None
    first_code = info["code_digest"]
    [stored] = (workspace.root / "cache" / "findings").glob("*/*/finding.json")
    written = stored.stat().st_mtime_ns
    assert workspace.run(*args) == 0
    # same code: the stored finding is read, not fitted again (the record, equal in value, is left as it was)
    assert list((workspace.root / "cache" / "findings").glob("*/*/finding.json")) == [stored]
    assert stored.stat().st_mtime_ns == written
    code_probe.write_text(code_probe.read_text() + "\n# the fit's module changed\n")
    assert workspace.run(*args) == 0
    reused, info = _probe_record(workspace)
    assert not reused and info["code_digest"] != first_code
    findings = list((workspace.root / "cache" / "findings").glob("*/*/finding.json"))
    assert len(findings) == 2


def test_code_digest_follows_a_direct_import_of_the_same_package():
    from vismech.code_digest import modules_of
    from vismech.methods.difflens import DiffLens

    names = {m.__name__ for m in modules_of(DiffLens)}
    assert {"vismech.methods.difflens", "vismech.method", "vismech.methods.sae"} <= names
    assert not any(n.split(".")[0] != "vismech" for n in names)


# --- limits and boards ---------------------------------------------------------------------------------------------

def test_the_bias_task_honours_its_limit_in_its_item_set():
    from vismech.benchmarks.bias import BiasBenchmark, BiasConfig
    from vismech.config import typed_config

    class Unconditional:
        conditional = False

    full = typed_config(BiasConfig, {"name": "bias", "ids": [200_000, 200_192]}, "task 'bias'")
    cut = typed_config(BiasConfig, {"name": "bias", "ids": [200_000, 200_192], "limit": 8}, "task 'bias'")
    wide = typed_config(BiasConfig, {"name": "bias", "ids": [200_000, 200_004], "limit": 8}, "task 'bias'")
    items, few, all_four = (BiasBenchmark.make_items(c, Unconditional()) for c in (full, cut, wide))
    assert len(items) == 192 and len(few) == 8 and len(all_four) == 4
    assert [few[i]["id"] for i in range(8)] == list(range(200_000, 200_008))
    assert few.name.endswith("test200000-200008") and few.digest() != items.digest()


def test_the_leaderboard_of_another_results_folder_goes_beside_it(tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    (cwd / "leaderboard.md").write_text("the checkout's board\n")
    monkeypatch.chdir(cwd)
    write_record(record("fine"), tmp_path / "elsewhere" / "results")
    assert cli.main(["leaderboard", "--results", str(tmp_path / "elsewhere" / "results")]) == 0
    assert (tmp_path / "elsewhere" / "leaderboard.md").is_file()
    assert (cwd / "leaderboard.md").read_text() == "the checkout's board\n"


def test_a_run_into_another_results_folder_leaves_this_board_alone(tmp_path, monkeypatch):
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    (cwd / "leaderboard.md").write_text("the checkout's board\n")
    monkeypatch.chdir(cwd)
    other = tmp_path / "elsewhere"
    assert cli.main(["run", "trial=false", "task.limit=2", "task.batch_size=2", f"paths.results_dir={other / 'results'}",
                     f"paths.cache_dir={tmp_path / 'cache'}", f"paths.runs_dir={tmp_path / 'runs'}"]) == 0
    assert "noop" in (other / "leaderboard.md").read_text()
    assert (cwd / "leaderboard.md").read_text() == "the checkout's board\n"


def _as_jas(rec, ids=None, values=None):
    """A hand-built record whose metric is the suite's per-item `jas`, optionally with other items."""
    from records import metric

    data = json.loads(rec.model_dump_json())
    m = json.loads(metric("jas", list(values or rec.sweep[0].metrics["score"].item_values)).model_dump_json())
    if ids is not None:
        m["item_ids"] = ids
    data["primary_metric"] = "jas"
    data["sweep"][0]["metrics"] = {"jas": m}
    data["items"]["size"] = m["n"]
    return type(rec).model_validate(data)


def test_a_subset_passes_only_when_its_items_give_the_claimed_values():
    from vismech.verify import compare

    claimed = _as_jas(record(values=(0.1, 0.2, 0.3, 0.4)))
    same = _as_jas(record(values=(0.1, 0.2)), ids=[0, 1])
    swapped = _as_jas(record(values=(0.2, 0.1)), ids=[0, 1])  # the same mean and interval, other items
    assert compare(claimed, same, subset=True)[0][0].passed
    [check], _ = compare(claimed, swapped, subset=True)
    assert not check.passed and check.rerun == pytest.approx(check.claimed)
    assert check.max_item_difference == pytest.approx(0.1)


def test_a_full_verification_checks_set_level_metrics_on_their_items_and_interval():
    """A bias record's FD, KID and recall keep item ids and pseudo-values, not item values: compared with itself every
    check passes; a re-run on other items, or with its value outside the claimed interval, fails that metric."""
    from vismech.verify import compare

    path = next((REPO / "results" / "mini" / "bias" / "sd_world").glob("difflens--*[0-9].json"))
    claimed = load_record(path)
    checks, skipped = compare(claimed, claimed, subset=False)
    assert skipped == [] and all(c.passed for c in checks)
    assert {"fd", "kid", "recall", "fid"} <= {c.metric for c in checks}
    rerun = claimed.model_copy(deep=True)  # a re-run's record, changed without the schema's checks
    point = rerun.sweep[-1].metrics
    point["kid"] = point["kid"].model_copy(update={"value": point["kid"].ci_high + 1.0})  # outside the interval
    point["recall"] = point["recall"].model_copy(update={"item_ids": point["recall"].item_ids[:-1] + [10 ** 9]})
    failed = {(c.metric, c.strength) for c in compare(claimed, rerun, subset=False)[0] if not c.passed}
    assert failed == {("kid", rerun.sweep[-1].strength), ("recall", rerun.sweep[-1].strength)}
