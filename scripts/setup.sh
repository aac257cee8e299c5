#!/usr/bin/env bash
# Creates .venv and installs vismech into it: `scripts/setup.sh` for running, `scripts/setup.sh dev` for tests.
# Idempotent: a second call with unchanged pyproject.toml/constraints.txt only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VISMECH_VENV:-.venv}
extra=""
[ "${1:-}" = dev ] && extra="[dev]"

# The mini world's source images: Fashion-MNIST (MIT licence) from Debian's package, installed once as root.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${VISMECH_FASHION_MNIST:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: the mini world needs Fashion-MNIST: 'sudo apt-get install dataset-fashion-mnist'," \
             "or set VISMECH_FASHION_MNIST to a folder with its four IDX .gz files" >&2
    fi
fi

# The leaderboard site's browser test (tests/test_site_browser.py) drives Debian's Chromium through its driver.
if [ -n "$extra" ] && ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium chromium-driver >/dev/null
    else
        echo "setup: the site's browser test needs 'sudo apt-get install chromium chromium-driver'" \
             "(it is skipped without them, and fails in CI)" >&2
    fi
fi

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
