"""Workers copied to devices run on the device's own Python: 3.6+ (stock JetPack 4 / old Raspberry Pi OS)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROFILE = Path(__file__).resolve().parents[1] / "scbp_edge" / "profile"
REMOTE = ["ort_worker.py", "trtexec_worker.py"]
THIRD_PARTY = {"ort_worker.py": {"numpy", "onnxruntime"}, "trtexec_worker.py": set()}


@pytest.mark.parametrize("name", REMOTE)
def test_remote_worker_needs_at_most_python_3_6(name):
    res = subprocess.run([str(Path(sys.executable).parent / "vermin"), "-t=3.6-", "--violations", "--no-tips",
                          str(PROFILE / name)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", REMOTE)
def test_remote_worker_imports_nothing_but_stdlib_and_its_runtime(name):
    tree = ast.parse((PROFILE / name).read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    foreign = {m for m in mods if m not in sys.stdlib_module_names} - THIRD_PARTY[name]
    assert not foreign, f"{name} would need {foreign} on the device"
