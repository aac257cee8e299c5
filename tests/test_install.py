"""Installing: the CPU-torch torchvision workaround (patches exactly the two registrations, once, and nothing
else); dependency ranges that admit the lockfile; setup.sh waiting for the dpkg lock; a wheel that installs, carries
the zoo's weights and runs outside the checkout."""
from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fix_cpu_torchvision", REPO / "scripts" / "fix_cpu_torchvision.py")
fix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fix)

ORIGINAL = '''import functools

import torch
import torchvision.extension  # noqa: F401


@functools.lru_cache(None)
def get_meta_lib():
    return torch.library.Library("torchvision", "IMPL", "Meta")


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    return dets


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    return dets
'''


def test_patch_guards_both_registrations_once(tmp_path):
    path = tmp_path / "_meta_registrations.py"
    path.write_text(ORIGINAL)
    fix.patch(path)
    patched = path.read_text()
    assert patched.count(fix.MARKER) == 1
    assert '@_register_fake_if_ops("torchvision::nms")' in patched
    assert '@_register_fake_if_ops("torchvision::qnms")' in patched
    assert "@torch.library.register_fake(" not in patched
    compile(patched, str(path), "exec")
    fix.patch(path)
    assert path.read_text() == patched  # idempotent


def test_unknown_layout_is_not_patched(tmp_path):
    path = tmp_path / "_meta_registrations.py"
    path.write_text("import torch\n")
    with pytest.raises(SystemExit, match="needs a new workaround"):
        fix.patch(path)
    assert path.read_text() == "import torch\n"


def test_torchvision_imports_in_this_environment():
    assert fix.import_error() is None


# --- installs that travel: ranges in pyproject, pins in the lockfile, a wheel that carries its weights ---

def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _locked() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_dependencies_are_ranges_that_admit_the_lockfile():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project, locked = _pyproject()["project"], _locked()
    # the dev extra's setuptools is the build backend, which pip freeze (the lockfile's source) leaves out
    for spec in project["dependencies"] + [s for s in project["optional-dependencies"]["dev"] if "setuptools" not in s]:
        req = Requirement(spec)
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"exact pin in pyproject: {spec}"
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(locked[name], prereleases=True), f"{spec} excludes the locked {locked[name]}"
    torch = next(Requirement(s) for s in project["dependencies"] if s.startswith("torch"))
    assert torch.specifier.contains("2.4.0") and not torch.specifier.contains("3.0.0")


def test_setup_waits_for_the_dpkg_lock():
    """Every apt-get of setup.sh carries apt's lock timeout, so a held dpkg lock is waited for, not a failure."""
    script = (REPO / "scripts" / "setup.sh").read_text()
    calls = [line for line in script.splitlines() if "apt-get" in line and not line.lstrip().startswith(("#", "echo"))
             and "command -v" not in line]
    assert calls and all("DPkg::Lock::Timeout=" in line or "$apt" in line for line in calls), calls
    assert 'apt="apt-get -o DPkg::Lock::Timeout=300"' in script and "$apt update" in script and "$apt install" in script


def _checkout_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked, and new files not ignored), so a build leaves the
    checkout untouched and builds what is being tested, uncommitted edits included."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_a_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """Build a wheel, install it (not editable) into a fresh venv, run a small neuron-path job from another folder.

    The fresh venv gets vismech only from the wheel; its dependencies are this environment's, reached through a
    .pth line (a path line: the editable install's hook in that folder is not run), so the test needs no index."""
    src = _checkout_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, timeout=600, capture_output=True)
    [wheel] = wheels.glob("vismech-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    weights = [p.relative_to(REPO).as_posix() for p in (REPO / "vismech" / "zoo" / "weights").rglob("*")
               if p.is_file() and not p.name.startswith(".")]
    assert len(weights) > 20 and [w for w in weights if w not in packaged] == []
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "vismech").rglob("__init__.py")}
    assert [p for p in packages if f"{p}/__init__.py" not in packaged] == []
    assert "vismech/configs/config.yaml" in packaged and "vismech/configs/model/vit_world.yaml" in packaged

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    "-c", str(REPO / "constraints.txt"), str(wheel)], check=True, timeout=600, capture_output=True)
    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (own_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CI="true", COLUMNS="200")
    where = subprocess.run([str(python), "-c", "import vismech; from vismech.zoo.manifest import read_manifest, "
                            "shipped_folder; print(vismech.__file__); [print(shipped_folder(n)) for n in "
                            "sorted(read_manifest())]"], cwd=elsewhere, env=env, check=True, capture_output=True,
                           text=True, timeout=300).stdout.splitlines()
    assert all(Path(line).is_relative_to(own_site / "vismech") for line in where), where  # every model hash-checked

    out = tmp_path / "out"
    proc = subprocess.run([str(venv / "bin" / "vismech"), "run", "task=neuron_path", "method=activation_path",
                           "task.limit=4", f"paths.results_dir={out / 'results'}", f"paths.runs_dir={out / 'runs'}",
                           f"paths.cache_dir={out / 'cache'}", f"paths.leaderboard={out / 'leaderboard.md'}"],
                          cwd=elsewhere, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = (out / "runs" / "trials").rglob("*.json")  # a limited run: a trial
    from vismech.results import load_record

    assert load_record(record).items.size == 4
    shipped = own_site / "vismech" / "zoo" / "weights" / "vit_world" / "model.safetensors"
    assert f"Loading pretrained weights from file ({shipped})" in proc.stdout + proc.stderr
    assert str(REPO / "vismech") not in proc.stdout + proc.stderr  # nothing of the checkout's package was read
