#!/usr/bin/env bash
# Create .venv with everything scbp-edge and its tests need (idempotent, fast when done).
# torch/torchvision are pinned to the builds this machine image ships on disk, so
# nothing large is downloaded; other packages come from PyPI by name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The SSH-device tests start a real OpenSSH server on 127.0.0.1.
if [ ! -x /usr/sbin/sshd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server) >/dev/null 2>&1 \
    || echo "warning: could not install openssh-server; SSH device tests will skip" >&2
fi
stamp=.venv/.scbp-bootstrap
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import scbp_edge, torch" 2>/dev/null; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v -i "warning" || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -i "warning" || true
.venv/bin/python -c "import scbp_edge, torch, torchvision, onnxruntime, torch_pruning" 
echo "$want" > "$stamp"
