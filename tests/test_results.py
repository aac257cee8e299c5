"""Result records: schema validation, atomic writes, and `vismech validate`."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from records import record

from vismech import cli
from vismech.errors import VismechError
from vismech.results import load_record, write_record


def test_write_and_load_round_trip(tmp_path):
    rec = record()
    path = write_record(rec, tmp_path)
    task = hashlib.sha256(b"{}").hexdigest()[:8]  # the record's task config: {}
    assert path == tmp_path / "mini" / "t" / "s" / f"m--mmmmmmmm--task{task}--seed0.json"
    assert load_record(path) == rec
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_runs_that_differ_in_the_task_are_different_records_but_not_in_the_batch_size(tmp_path):
    names = {key: record().model_copy(update={"config": {"task": {"target": target, "batch_size": size}}}).file_name()
             for key, (target, size) in {"a": ("sandal", 8), "b": ("sandal", 64), "c": ("pullover", 8)}.items()}
    assert names["a"] == names["b"] != names["c"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("task"), "task: Field required"),
    (lambda d: d.update(schema_version=7), "has schema_version 7; this vismech reads 2"),
    (lambda d: d["sweep"][0]["metrics"]["score"].update(value=9.0), "lies outside its CI"),
    (lambda d: d["sweep"][0]["metrics"]["score"].update(direction="up"), "direction: Input should be 'higher' or 'lower'"),
    (lambda d: d["headline"].update(strength=0.5), "headline strength 0.5 is not in the sweep"),
    (lambda d: d.update(primary_metric="other"), "primary metric 'other' missing at strength 1.0"),
    (lambda d: d["subject"].update(track="medium"), "subject.track: Input should be 'mini' or 'paper'"),
    (lambda d: d.update(extra_field=1), "extra_field: Extra inputs are not permitted"),
    (lambda d: d["sweep"][0]["metrics"]["score"].update(n=3), "n=3 but 4 ids"),
])
def test_malformed_records_are_refused(tmp_path, mutate, message):
    data = json.loads(record().model_dump_json())
    mutate(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(VismechError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_record(path)


def test_validate_command(tmp_path, capsys):
    good = write_record(record(), tmp_path)
    assert cli.main(["validate", str(good)]) == 0
    assert "valid (schema 2, task t, method m)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vismech: error: result record '{bad}' is not valid JSON") and "\n" not in err
    assert cli.main(["validate", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    assert cli.main(["validate", str(listing)]) == 2
    assert "must be a JSON object, got list" in capsys.readouterr().err
