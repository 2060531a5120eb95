"""The runtime registry: a new runtime is one package plus one entry point, and capabilities are enforced."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scbp_edge.runtimes import runtime_class, runtime_names

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """An environment where the third-party runtime 'ort-basic' is installed (a dist-info with its entry point)."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(HERE / "plugin_runtime" / "scbp_ort_basic.py", site)
    info = site / "scbp_ort_basic-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scbp-ort-basic\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[scbp_edge.runtimes]\nort-basic = scbp_ort_basic:OrtBasic\n")
    targets = site / "targets"
    targets.mkdir()
    shutil.copy(ROOT / "targets" / "cpu.toml", targets)
    (targets / "ort-basic.toml").write_text(
        'name = "ort-basic"\nbackend = "ort-basic"\nthreads = 1\nenergy = "none"\n'
        "[measure]\nwarmup = 2\nrounds = 2\nmin_runs = 5\nmin_seconds = 0.05\ntimeout_s = 120\n")
    env = dict(os.environ, PYTHONPATH=str(site), SCBP_TARGETS_DIR=str(targets))
    return env, site


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("name", runtime_names())
def test_every_declared_capability_is_backed_by_what_it_needs(name):
    """A capability a runtime declares but cannot honour fails here, not on a user's device."""
    from scbp_edge.resources import data_dir
    from scbp_edge.targets import ENERGY, LOCATIONS, PRECISIONS

    cls = runtime_class(name)
    caps = cls.capabilities
    assert caps.precisions and set(caps.precisions) <= set(PRECISIONS), caps.precisions
    assert set(caps.energy) <= set(ENERGY) and set(caps.locations) <= set(LOCATIONS)
    assert caps.consumes in ("onnx", "torch") and caps.int8_scheme in ("s8s8", "u8s8")
    assert caps.batch_sizes is None or (caps.batch_sizes and min(caps.batch_sizes) >= 1)
    if "ssh" in caps.locations:  # an SSH device runs the runtime's own worker script
        assert cls.remote_files and all(f.is_file() for f in cls.remote_files), cls.remote_files
    if caps.deployable:  # an image needs a Dockerfile template and code that serves the model inside it
        assert (data_dir("docker") / f"{name}.Dockerfile").is_file()
        server = runtime_class(cls.serves_with) if cls.serves_with else cls
        assert server.serve_files and all(f.is_file() for f in server.serve_files), server.serve_files


def test_the_builtin_runtimes_are_found_through_the_registry():
    assert {"onnxruntime", "tensorrt", "trtexec", "torch-cuda"} <= set(runtime_names())


@pytest.mark.slow
def test_a_third_party_runtime_is_one_package_and_one_entry_point(plugin_env, tmp_path):
    env, _ = plugin_env
    res = _cli(env, "targets", "--json")
    assert res.returncode == 0, res.stderr
    row = next(r for r in json.loads(res.stdout) if r["name"] == "ort-basic")
    assert row["status"] == "available" and row["capabilities"]["precisions"] == ["fp32"]

    res = _cli(env, "build", "--target", "ort-basic", "--data", "none", "--ratios", "0,0.5", "--scope", "stream",
               "--top-k", "0",
               "--runs", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    run_dir = Path(json.loads(res.stdout)["run_dir"])
    report = json.loads((run_dir / "report.json").read_text())
    measured = [c for c in report["candidates"] if c["status"] == "measured"]
    assert measured and all(c["measurement"]["backend"] == "ort-basic" for c in measured)
    assert all(c["measurement"]["info"]["runtime"] == "ort-basic" for c in measured)

    onnx = next((run_dir / "onnx").glob("*.onnx"))
    res = _cli(env, "profile", str(onnx), "--target", "ort-basic", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["backend"] == "ort-basic" and m["threads"] == 1 and m["latency"]["p50_ms"] > 0


def test_what_a_runtime_cannot_do_is_refused_in_one_line_before_any_work(plugin_env, tmp_path):
    env, _ = plugin_env
    res = _cli(env, "build", "--target", "ort-basic", "--precision", "int8", "--data", "none",
               "--runs", str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "int8" in res.stderr and "ort-basic" in res.stderr
    assert not list(tmp_path.iterdir()), "a run directory was made for a build that could not start"


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_an_explicit_round_to_is_kept_over_the_targets(tmp_path):
    target = tmp_path / "t.toml"
    target.write_text('name = "t"\nbackend = "onnxruntime"\nthreads = 1\nround_to = 16\n'
                      "[measure]\nwarmup = 1\nrounds = 1\nmin_runs = 2\nmin_seconds = 0.01\n")
    got = {}
    for flag in ([], ["--round-to", "8"]):
        res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(target), "--data",
                              "none", "--ratios", "0", "--top-k", "0", "--runs", str(tmp_path / "runs"), "--json",
                              *flag], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
        got[bool(flag)] = rep["run"]["config"]["seed"]["round_to"]
    assert got == {False: 16, True: 8}


def test_readme_runtime_table_matches_the_capabilities():
    from scbp_edge.runtimes import capabilities_markdown

    readme = (ROOT / "README.md").read_text()
    table = capabilities_markdown()
    assert table in readme, "README's runtime table is stale; paste scbp_edge.runtimes.capabilities_markdown()"
    assert re.search(r"\| trtexec \|", table)
