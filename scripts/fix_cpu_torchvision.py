"""Workaround for CPU-only torch with PyPI's torchvision wheel (a CUDA build).

torchvision 0.28.0 from PyPI cannot load its compiled ops next to a CPU build of torch 2.13.0, and its
`_meta_registrations.py` then registers fake kernels for `torchvision::nms` / `torchvision::qnms`
unconditionally, so `import torchvision` (and with it timm, open_clip, torchmetrics, lightning) fails with
`RuntimeError: operator torchvision::nms does not exist`. vismech uses none of those ops.

This script runs after every install (scripts/setup.sh). It:
- does nothing when `import torchvision` works (any machine where torchvision's ops load, CUDA machines);
- otherwise, only for exactly that error, guards those two registrations with the same `_has_ops()` check the
  file already uses for every other op, then checks that the import works;
- is idempotent: a patched file is recognised by its marker and left alone.
Library code never depends on it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MARKER = "# vismech: cpu-torch guard"
ERROR = "operator torchvision::nms does not exist"
GUARD = f'''
{MARKER}
def _register_fake_if_ops(name):
    if torchvision.extension._has_ops():
        return torch.library.register_fake(name)
    return lambda fn: fn

'''


def import_error() -> str | None:
    """The stderr of `import torchvision` in a fresh interpreter, or None if it imports."""
    proc = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    return None if proc.returncode == 0 else proc.stderr


def meta_registrations_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        sys.exit("fix_cpu_torchvision: torchvision is not installed")
    return Path(spec.origin).parent / "_meta_registrations.py"


def patch(path: Path) -> None:
    text = path.read_text()
    if MARKER in text:
        return
    decorators = ['@torch.library.register_fake("torchvision::nms")', '@torch.library.register_fake("torchvision::qnms")']
    missing = [d for d in decorators if d not in text]
    if missing:
        sys.exit(f"fix_cpu_torchvision: {path} does not contain {missing}; this torchvision needs a new workaround")
    for d in decorators:
        text = text.replace(d, d.replace("torch.library.register_fake", "_register_fake_if_ops"))
    anchor = "@functools.lru_cache(None)"
    if anchor not in text:
        sys.exit(f"fix_cpu_torchvision: {path} has no '{anchor}' to place the guard before")
    text = text.replace(anchor, GUARD + anchor, 1)
    tmp = path.with_suffix(".py.vismech-tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    error = import_error()
    if error is None:
        print("torchvision imports: no workaround needed")
        return
    if ERROR not in error:
        sys.exit(f"fix_cpu_torchvision: `import torchvision` fails for another reason:\n{error}")
    path = meta_registrations_file()
    patch(path)
    error = import_error()
    if error is not None:
        sys.exit(f"fix_cpu_torchvision: patched {path} but `import torchvision` still fails:\n{error}")
    print(f"torchvision: guarded the nms/qnms fake registrations in {path} (CPU-only torch workaround)")


if __name__ == "__main__":
    main()
