"""The wheel works outside the checkout (issue 11): targets, a small build and package from an installed wheel.

The wheel is built from this checkout and installed with ``--no-deps`` into a fresh venv in a
temporary folder; that venv sees the test venv's packages through a ``.pth`` line (reinstalling
torch would cost minutes and gigabytes), and ``pip check`` then proves the wheel's declared
dependencies are met by them.  Every command runs from outside the checkout, so nothing can come
from ``Path(__file__).parents``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, (argv, res.stdout[-2000:], res.stderr[-2000:])
    return res


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(ROOT)], tmp)
    (whl,) = (tmp / "dist").glob("scbp_edge-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "scbp_edge/_data/targets/cpu.toml" in names and "scbp_edge/_data/docker/onnxruntime.Dockerfile" in names
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout.strip())
    (site / "deps-from-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(whl)], tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCBP_TARGETS_DIR", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return venv, env


def test_the_wheel_is_what_runs_and_its_dependencies_are_met(wheel_venv, tmp_path):
    venv, env = wheel_venv
    where = _run([str(venv / "bin/python"), "-c", "import scbp_edge; print(scbp_edge.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # not the checkout's editable install
    _run([str(venv / "bin/python"), "-m", "pip", "check"], tmp_path, env)


def test_targets_build_and_package_from_the_wheel(wheel_venv, tmp_path):
    venv, env = wheel_venv
    exe = str(venv / "bin" / "scbp-edge")
    listed = json.loads(_run([exe, "targets", "--json"], tmp_path, env).stdout)
    assert {"cpu", "jetson-nano", "jetson-orin-nano", "desktop-gpu"} <= {t["name"] for t in listed}
    res = _run([exe, "build", "--target", "cpu", "--data", "none", "--ratios", "0,0.5", "--runs", "runs", "--json"],
               tmp_path, env)
    run_dir = tmp_path / json.loads(res.stdout)["run_dir"]  # relative to the cwd, or absolute
    assert (run_dir / "report.html").is_file()
    _run([exe, "package", str(run_dir), "--candidate", "best", "-o", "ctx"], tmp_path, env)
    manifest = json.loads((tmp_path / "ctx" / "manifest.json").read_text())
    assert manifest["candidate"] == json.loads((run_dir / "report.json").read_text())["selection"]["id"]
    assert (tmp_path / "ctx" / manifest["model"]).is_file()
    assert "FROM" in (tmp_path / "ctx" / "Dockerfile").read_text()  # the template came out of the wheel
