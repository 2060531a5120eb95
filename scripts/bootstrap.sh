#!/usr/bin/env bash
# Create .venv with everything scbp-edge and its tests need (idempotent, fast when done).
# torch/torchvision are pinned to the builds this machine image ships on disk, so
# nothing large is downloaded; other packages come from PyPI by name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Test tools from Debian (as root): a real OpenSSH server for the SSH-device tests, Chromium for the
# HTML report test, podman + debootstrap for the container test (podman with its recommends: its
# network and storage helpers). Without them those tests skip with the reason.
need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v chromium >/dev/null || need="$need chromium"
ctr=""
if ! command -v podman >/dev/null && ! (command -v docker >/dev/null && docker version >/dev/null 2>&1); then
  ctr="podman runc iptables"
fi
command -v debootstrap >/dev/null || ctr="$ctr debootstrap"
if [ -n "$need$ctr" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null 2>&1 || true
  [ -z "$need" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need \
    >/dev/null 2>&1 || echo "warning: could not install$need; the tests that need them will skip" >&2
  [ -z "$ctr" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $ctr >/dev/null 2>&1 \
    || echo "warning: could not install$ctr; the container test will skip" >&2
fi
stamp=.venv/.scbp-bootstrap
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import scbp_edge, torch" 2>/dev/null; then
  exit 0
fi
rm -rf scbp_edge.egg-info  # left by setuptools installs of earlier versions: it hides the entry points
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v -i "warning" || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -i "warning" || true
.venv/bin/python -c "import scbp_edge, torch, torchvision, onnxruntime, torch_pruning" 
echo "$want" > "$stamp"
