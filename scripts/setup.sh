#!/usr/bin/env bash
# Creates .venv and installs vismech into it: `scripts/setup.sh` for running, `scripts/setup.sh dev` for tests.
# Idempotent: a second call with unchanged pyproject.toml/constraints.txt only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VISMECH_VENV:-.venv}
extra=""
[ "${1:-}" = dev ] && extra="[dev]"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.vismech-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)${extra:+-dev}"
if [ ! -f "$stamp" ]; then
    # torch first, pinned: if another package chose it, pip would take the newest CUDA build.
    "$py" -m pip install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
    "$py" -m pip install -q -c constraints.txt -e ".$extra"
    touch "$stamp"
fi
# CPU-only torch beside PyPI's CUDA torchvision: see scripts/fix_cpu_torchvision.py.
"$py" scripts/fix_cpu_torchvision.py
