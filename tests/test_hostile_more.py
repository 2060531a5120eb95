"""Hostile input, round three (issue 29): a full disk, clean --json, limits the host cannot measure, bad weights
or data named up front, list options, and the kills nobody had tried (inside derive, under Ray)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import cli, fast_target
from tests.test_hostile import _one_line, _wait_for


def _images(root: Path, classes: tuple[str, ...], per: int = 6) -> Path:
    """A real ImageFolder data set (PNG files of random 32x32 images) with train/ and test/ splits."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _build(tmp: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(fast_target(tmp)),
                           "--runs", str(tmp / "runs"), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=tmp)


def _error_line(res: subprocess.CompletedProcess, match: str) -> str:
    """A build that failed part-way: exit 2, no traceback, one error line (progress bars may precede it)."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], res.stderr[-2000:]
    return errors[0]


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_folder_and_the_resume(tmp_path):
    runs = tmp_path / "small"
    runs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(runs)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 3 MB tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        res = _build(tmp_path, "--runs", str(runs), "--ratios", "0,0.5", "--top-k", "0")
        line = _error_line(res, "is full")
        run = next(runs.iterdir())
        assert f"scbp-edge build --resume {run}" in line
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)


@pytest.mark.slow
def test_json_stdout_holds_only_the_document_even_with_calibrator_chatter(tmp_path):
    res = _build(tmp_path, "--ratios", "0", "--precision", "int8", "--calibration", "entropy", "--top-k", "0",
                 "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)  # no "Collecting tensor data ..." before it
    assert doc["selection"]["id"].endswith("_int8")


def test_an_energy_limit_without_a_sensor_is_refused_before_any_work(tmp_path):
    empty = tmp_path / "no-powercap"
    empty.mkdir()
    res = _build(tmp_path, "--ratios", "0,0.5", "--top-k", "0", "--max-energy-mj", "5",
                 env={"SCBP_RAPL_ROOT": str(empty)})
    _one_line(res, "--max-energy-mj needs a power sensor, and none can be read here: no RAPL domain")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_a_limit_nothing_meets_fails_the_build_and_names_the_limit(tmp_path):
    res = _build(tmp_path, "--data", "none", "--ratios", "0,0.5", "--top-k", "0", "--max-size-mb", "0.001")
    line = _error_line(res, "no model selected")
    assert re.search(r"--max-size-mb 0.001: (\d+) of \1 measured candidates exceed it", line), line
    assert (next((tmp_path / "runs").iterdir()) / "report.json").is_file()  # the work is kept


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from scbp_edge.seeds.cifar_resnet import CifarResNet

    d = tmp_path_factory.mktemp("weights")
    state = CifarResNet(20, 10).state_dict()
    state["layer2.0.bn1.weight"] = torch.full_like(state["layer2.0.bn1.weight"], float("nan"))
    torch.save(state, d / "nan.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {d / 'PWNED'}",))

    torch.save({"state_dict": {"conv1.weight": Evil()}}, d / "evil.pt")
    return d


def test_non_finite_weights_are_named_on_load(weights):
    res = cli("inspect", "--weights", str(weights / "nan.pt"))
    _one_line(res, "holds non-finite weights: tensor 'layer2.0.bn1.weight' has 32 of 32 values NaN")


def test_a_checkpoint_that_references_code_is_named_and_never_run(weights):
    res = cli("inspect", "--weights", str(weights / "evil.pt"))
    _one_line(res, "holds a reference to code (posix.system) that safe (weights-only) loading refuses")
    assert not (weights / "PWNED").exists()


def test_one_class_of_data_is_refused(tmp_path):
    data = _images(tmp_path / "data", ("cat",))
    _one_line(_build(tmp_path, "--data", str(data)), "has one class (cat)")


@pytest.mark.slow
def test_unreadable_and_oversized_images_are_named_and_counted(tmp_path):
    data = _images(tmp_path / "data", ("cat", "dog"), per=8)
    good = (data / "train" / "cat" / "0.png").read_bytes()
    (data / "train" / "cat" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    (data / "test" / "dog" / "junk.png").write_bytes(b"this is not an image")
    Image.new("1", (10000, 10000)).save(data / "train" / "dog" / "huge.png")  # 100 M pixels, a small file
    res = _build(tmp_path, "--data", str(data), "--ratios", "0", "--top-k", "0", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "DecompressionBomb" not in res.stderr and "PIL" not in res.stderr
    warn = " ".join(res.stderr.split())  # rich wraps the warning at 80 columns
    assert "3 image(s)" in warn and "cut.png" in warn and "junk.png" in warn and "huge.png" in warn
    assert "exceeds the limit" in warn
    rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
    assert len(rep["data"]["skipped"]) == 3 and rep["data"]["test"] == 16  # 8 per class; junk.png left out
    assert "3 unreadable image(s) left out" in (Path(json.loads(res.stdout)["run_dir"]) / "report.md").read_text()


@pytest.mark.parametrize(("args", "match"), [
    (["build", "--ratios", "0,,0.5"], "--ratios '0,,0.5' has an empty item"),
    (["build", "--ratios", "0,0.5,"], "--ratios '0,0.5,' has an empty item"),
    (["build", "--precision="], "--precision '' has an empty item"),
    (["build", "--precision", "fp32,,int8"], "--precision 'fp32,,int8' has an empty item"),
    (["search", "--ratios", "0,,0.5"], "has an empty item"),
    (["derive", "--config", "0.5,,0", "-o", "x.pt"], "--config '0.5,,0' has an empty item"),
    (["build", "--qat-threshold", "-1"], "--qat-threshold -1.0 must be 0 (always run QAT) or more"),
])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_list_options_refuse_empty_items_alike(tmp_path, args, match):
    _one_line(cli(*args, cwd=tmp_path, timeout=120), match)


def test_a_target_asking_for_a_precision_its_runtime_lacks_names_the_real_field(tmp_path):
    (tmp_path / "t.toml").write_text('name = "x"\nbackend = "onnxruntime"\nprecisions = ["fp16"]\n')
    _one_line(_build(tmp_path, "--target", str(tmp_path / "t.toml"), "--data", "none"),
              "field 'precisions' asks for fp16")


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> Path:
    """A small finished run without data (the seed and r50-50-50), for compare and selection checks."""
    tmp = tmp_path_factory.mktemp("run")
    res = _build(tmp, "--data", "none", "--ratios", "0,0.5", "--limit", "1", "--proxy", "distill", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    return Path(json.loads(res.stdout)["run_dir"])


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_compare_says_unchanged_for_an_unchanged_figure(seed_run):
    res = cli("compare", str(seed_run / "report.json"), str(seed_run / "report.json"), "--max-regression", "0")
    assert res.returncode == 0, res.stderr
    assert "+0.0% improved" not in res.stdout + res.stderr and "-0.0% better" not in res.stdout + res.stderr


def test_without_data_no_accuracy_is_claimed_and_the_skipped_proxy_is_named(seed_run):
    rep = json.loads((seed_run / "report.json").read_text())
    assert "most accurate" not in rep["selection"]["reason"]
    note = " ".join(rep["run"]["notes"])
    assert "the distillation proxy (--proxy distill)" in note and "no accuracy is claimed" in note


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_qat_threshold_zero_always_runs_qat(tmp_path):
    res = _build(tmp_path, "--ratios", "0,0.5", "--limit", "1", "--precision", "fp32,int8", "--top-k", "1",
                 "--epochs", "1", "--qat-epochs", "1", "--qat-threshold", "0", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
    int8 = [c["trained"] for c in rep["candidates"] if c["precision"] == "int8" and c["trained"]]
    assert int8 and all(t["qat"] and t["qat"]["epochs"] == 1 and t["qat"]["ok"] for t in int8)
    assert all(t["test_accuracy"] >= max(t["ptq_test_accuracy"], t["qat"]["test_accuracy"]) - 1e-9 for t in int8)


def _statuses(db: Path) -> dict[str, tuple[str, float]]:
    try:
        con = sqlite3.connect(db)
        rows = {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, status, updated FROM candidates")}
        con.close()
        return rows
    except sqlite3.Error:
        return {}


def _kill_mid_derive_then_resume(tmp: Path, *extra: str) -> None:
    """SIGKILL the build once some networks are derived and others are not; resume; nothing finished is redone."""
    args = [sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(fast_target(tmp)), "--data",
            "digits", "--ratios", "0,0.5", "--scope", "stream", "--top-k", "0", "--runs", str(tmp / "runs"),
            *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    db = _wait_for(lambda: next(iter((tmp / "runs").glob("*/run.sqlite")), None), timeout=300)
    rows = _wait_for(lambda: (lambda r: r if any(s == "exported" for s, _ in r.values()) else None)(_statuses(db)),
                     timeout=400)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _statuses(db)
    done = {k for k, v in before.items() if v[0] == "exported"}
    assert done and any(s == "pending" for s, _ in before.values()), "the kill must land inside derive"
    files = {p.name: p.stat().st_mtime_ns for p in (db.parent / "onnx").glob("*.onnx")}
    res = cli("build", "--resume", str(db.parent), timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    after = _statuses(db)
    assert set(after) == set(before) and all(s == "measured" for s, _ in after.values())
    for cid in done:  # a network derived before the kill is measured from its file, not derived again
        name = f"{cid.rsplit('_', 1)[0]}.onnx"
        assert (db.parent / "onnx" / name).stat().st_mtime_ns == files[name], f"{name} was derived again"
    assert rows


@pytest.mark.slow
def test_sigkill_inside_derive_resumes_without_redoing_finished_networks(tmp_path):
    _kill_mid_derive_then_resume(tmp_path)


@pytest.mark.slow
def test_a_ray_build_killed_mid_run_resumes(tmp_path):
    pytest.importorskip("ray")
    try:
        _kill_mid_derive_then_resume(tmp_path, "--executor", "ray")
    finally:  # Ray's own daemons outlive a SIGKILLed driver: stop them, as a user would
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True,
                       timeout=120, check=False)


@pytest.mark.parametrize(("args", "match"), [
    (["--retries", "3"], "--retries: for --executor ray only; add --executor ray, or drop --retries"),
    (["--ray-address", "auto"], "--ray-address: for --executor ray only"),
    (["--retries", "1", "--ray-address", "auto"], "--retries and --ray-address: for --executor ray only"),
    (["--bn-images", "0"], "--bn-images 0 must be at least 1"),
    (["--val-fraction", "1.5"], "--val-fraction 1.5 must be between 0 and 1"),
])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_options_that_would_do_nothing_or_are_named_in_messages_are_real_flags(tmp_path, args, match):
    _one_line(_build(tmp_path, "--data", "none", *args, timeout=120), match)


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_bn_images_and_val_fraction_reach_the_proxy(tmp_path):
    res = _build(tmp_path, "--ratios", "0,0.5", "--limit", "1", "--top-k", "0", "--bn-images", "64",
                 "--val-fraction", "0.2", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
    proxies = [c["accuracy"] for c in rep["candidates"] if c.get("accuracy")]
    assert proxies and all(p["bn_images"] == 64 for p in proxies), proxies
    default = json.loads((Path(json.loads(_build(tmp_path, "--ratios", "0", "--top-k", "0", "--json").stdout)
                               ["run_dir"]) / "report.json").read_text())
    base = next(c["accuracy"] for c in default["candidates"] if c.get("accuracy"))
    assert proxies[0]["val_images"] > base["val_images"]  # 20 % of the train split held out, not 10 %
