"""Code that runs on devices and in images runs on the device's own Python: 3.6+ (stock JetPack 4, old Pi OS).

The files are taken from the registry: every runtime's remote worker files and
serving files, plus the shared serving package, checked against the Python
floor its capabilities declare.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from scbp_edge.runtimes import runtime_class, runtime_names

SERVING = Path(__file__).resolve().parents[1] / "scbp_edge" / "serving"
THIRD_PARTY = {"numpy", "onnxruntime", "PIL", "tensorrt"}  # what a device or image provides itself
# Imports a file may make in the source tree only, as the fallback of a `from . import` inside an image.
SOURCE_TREE_FALLBACK = {"scbp_edge"}


def _device_files() -> dict[Path, tuple[int, int]]:
    files: dict[Path, tuple[int, int]] = {}
    for name in runtime_names():
        cls = runtime_class(name)
        for f in (*cls.remote_files, *cls.serve_files):
            floor = cls.capabilities.device_python
            files[f] = min(files.get(f, floor), floor)
    for f in SERVING.glob("*.py"):
        files[f] = (3, 6)
    return files


FILES = _device_files()


def test_every_runtime_ships_its_device_side_code():
    """Every file the registry names exists (that each SSH or deployable runtime names its worker and serving
    code is checked against its capabilities in test_runtimes.py)."""
    assert all(f.is_file() for f in FILES), [f for f in FILES if not f.is_file()]
    assert SERVING / "server.py" in FILES


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_device_code_runs_on_its_declared_python(path):
    floor = FILES[path]
    res = subprocess.run([str(Path(sys.executable).parent / "vermin"), f"-t={floor[0]}.{floor[1]}-", "--violations",
                          "--no-tips", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_device_code_imports_nothing_but_stdlib_and_its_runtime(path):
    tree = ast.parse(path.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    foreign = {m for m in mods if m not in sys.stdlib_module_names} - THIRD_PARTY - SOURCE_TREE_FALLBACK
    foreign.discard("trt_engine")  # the worker's sibling on the device
    assert not foreign, f"{path.name} would need {foreign} on the device"
