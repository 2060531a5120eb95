"""trtexec backend: version-specific flags, log/power interpretation on real device logs, and a
whole Jetson-target build over a real SSH connection.

No TensorRT or Jetson here, so the device's trtexec/tegrastats/nvpmodel are
the stand-ins of tests/device_emulator (real ONNX Runtime timings, trtexec's
flag rules and log format, replayed real tegrastats lines).  What this does
NOT show: that real TensorRT builds or times these engines.
"""

from __future__ import annotations

import glob
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scbp_edge.errors import CompileError, ProfileError
from scbp_edge.runtimes.common import trt_engine
from scbp_edge.runtimes.trtexec import Trtexec
from scbp_edge.runtimes.trtexec import worker as tw
from tests.device_emulator import install

WORKER = Path(tw.__file__)
NANO_POWER = "fixtures/tegrastats/01_nano_jp4_sudo_tegrastats_terminal.txt"

JETSON_TARGET = """
name = "jetson-emulated"
backend = "trtexec"
precision = "fp16"
round_to = 8
energy = "tegrastats"
location = "ssh"
workspace_mb = 256
[measure]
warmup = 20
rounds = 2
min_runs = 5
min_seconds = 0.2
timeout_s = 120
power_interval_ms = 50
idle_seconds = 0.3
"""


@pytest.mark.parametrize(("version", "precision", "want", "unwanted"), [
    ((8, 2, 1), "fp16", ["--workspace=512", "--buildOnly", "--fp16"], ["--memPoolSize", "--skipInference"]),
    ((8, 4, 0), "fp16", ["--memPoolSize=workspace:512", "--buildOnly"], ["--workspace=", "--skipInference"]),
    ((8, 6, 1), "int8", ["--memPoolSize=workspace:512", "--skipInference", "--int8", "--fp16"], ["--buildOnly"]),
    ((10, 16, 1), "fp16", ["--memPoolSize=workspace:512", "--skipInference", "--fp16"], ["--workspace=", "--int8"]),
    ((11, 4, 0), "fp16", ["--memPoolSize=workspace:512", "--skipInference"], ["--workspace=", "--fp16", "--int8"]),
    ((11, 4, 0), "int8", ["--skipInference"], ["--fp16", "--int8"]),  # 11: QDQ in a strongly typed network
])
def test_build_flags_follow_the_tensorrt_version(version, precision, want, unwanted):
    argv = trt_engine.build_argv("trtexec", trt_engine.recipe(version, precision, 512), "m.onnx", "e")
    for flag in want:
        assert flag in argv
    assert not [a for a in argv for u in unwanted if a.startswith(u)]


@pytest.mark.parametrize(("version", "want", "unwanted"), [
    ((8, 2, 1), ["--useSpinWait"], ["--includeDataTransfers", "--noCudaGraph", "--noDataTransfers"]),
    ((10, 16, 1), ["--useSpinWait"], ["--includeDataTransfers", "--noCudaGraph", "--noDataTransfers"]),
    # 11 turned data transfers off and CUDA graphs on by default: turn them back to 8.x/10.x behaviour
    ((11, 4, 0), ["--includeDataTransfers", "--noCudaGraph"], ["--useSpinWait", "--noDataTransfers"]),
])
def test_timing_flags_keep_latencies_comparable_across_releases(version, want, unwanted):
    argv = trt_engine.time_argv("trtexec", version, "e.engine", 200, 100, 3.0, "t.json")
    assert all(f in argv for f in want) and not any(f in argv for f in unwanted)


def test_recipe_labels_what_the_engine_really_is_and_keys_everything():
    assert trt_engine.recipe((11, 4, 0), "fp16", 64)["label"].startswith("fp16 only from an fp16 ONNX")
    assert trt_engine.recipe((10, 16, 1), "fp16", 64)["label"] == "fp16"
    base = trt_engine.recipe((10, 16, 1), "fp16", 4096)
    key = trt_engine.cache_key("a" * 64, "NVIDIA H100", base)
    for other in (trt_engine.cache_key("b" * 64, "NVIDIA H100", base),
                  trt_engine.cache_key("a" * 64, "Orin", base),
                  trt_engine.cache_key("a" * 64, "NVIDIA H100", trt_engine.recipe((8, 6, 1), "fp16", 4096)),
                  trt_engine.cache_key("a" * 64, "NVIDIA H100", trt_engine.recipe((10, 16, 1), "fp32", 4096)),
                  trt_engine.cache_key("a" * 64, "NVIDIA H100", trt_engine.recipe((10, 16, 1), "fp16", 1024)),
                  trt_engine.cache_key("a" * 64, "NVIDIA H100", trt_engine.recipe((10, 16, 1), "fp16", 4096, 8))):
        assert other != key
    assert trt_engine.cache_key("a" * 64, "NVIDIA H100", trt_engine.recipe((10, 16, 1), "fp16", 4096)) == key


def test_warmups_in_old_export_times_are_dropped_as_trtexec_does():
    trace = [{"startComputeMs": t, "latencyMs": 5.0 if t < 200 else 1.0} for t in range(0, 400, 10)]
    assert trt_engine.timed_latencies(trace, (8, 2, 1), 200) == [1.0] * 20
    assert trt_engine.timed_latencies(trace, (8, 6, 1), 200) == [5.0] * 20 + [1.0] * 20  # 8.5+: none in it


def _worker(tmp: Path, onnx: Path, bin_dir: Path, rounds: int = 1) -> list[dict]:
    cfg = {"model": str(onnx), "warmup": 10, "bin_dir": str(bin_dir), "engine_cache": str(tmp / "cache"),
           "workspace_mb": 256, "precision": "fp16", "power_interval_ms": 50, "idle_seconds": 0.2}
    lines = [json.dumps(cfg)] + [json.dumps({"cmd": "round", "min_runs": 5, "min_seconds": 0.2})] * rounds
    res = subprocess.run([sys.executable, str(WORKER)], input="\n".join([*lines, '{"cmd": "stop"}']) + "\n",
                         capture_output=True, text=True, timeout=120)
    return [json.loads(x) for x in res.stdout.splitlines()]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    from scbp_edge.export.onnx import export_onnx
    from scbp_edge.seeds import load_seed

    seed = load_seed("cifar-resnet20")
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(seed.model, seed.spec.input_shape, path)
    return path


@pytest.mark.parametrize("version", ["8.2.1", "8.4.0", "10.16.1", "11.4.0"])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_emulated_trtexec_accepts_the_worker_flags_and_engines_are_cached(tmp_path, onnx_file, version):
    bin_dir = install(tmp_path / "bin", version, None)
    first = _worker(tmp_path, onnx_file, bin_dir)
    assert first[0]["ready"] and not first[0]["info"]["engine_cached"], first
    assert first[0]["info"]["tensorrt"] == version and len(first[1]["latencies_ms"]) >= 5
    # warm-up iterations are not timed ones, whatever the release writes into --exportTimes
    timed = int(re.search(r"Timing trace has (\d+) queries", first[1]["log"]).group(1))
    assert len(first[1]["latencies_ms"]) == timed
    # fp16 was asked; TensorRT 11 has no switch for it, and the record must say what was built
    built = first[0]["info"]["precision"]
    assert built == "fp16" if int(version.split(".")[0]) < 11 else built.startswith("fp16 only from an fp16 ONNX")
    again = _worker(tmp_path, onnx_file, bin_dir)
    assert again[0]["info"]["engine_cached"] and again[0]["load_s"] == 0.0
    builds = [c for c in (bin_dir / "calls.log").read_text().splitlines() if "--saveEngine" in c]
    assert len(builds) == 1, "the cached engine was built again"
    assert not list((tmp_path / "cache").glob("*.part*"))


def test_engine_that_no_longer_loads_fails_with_trtexecs_words_and_stops_sampling(tmp_path, onnx_file, shared):
    import psutil

    bin_dir = install(tmp_path / "bin", "8.2.1", shared / NANO_POWER)
    assert "latencies_ms" in _worker(tmp_path, onnx_file, bin_dir)[1]
    engine = next((tmp_path / "cache").glob("*.engine"))
    engine.write_bytes(b"built by another TensorRT")  # e.g. JetPack upgraded under the cache
    out = _worker(tmp_path, onnx_file, bin_dir)
    assert out[0]["info"]["engine_cached"] and "timing run failed" in out[1]["error"]
    assert "deserialization failed" in out[1]["error"] and "--resume rebuilds it" in out[1]["error"]
    assert not engine.exists(), "a cached engine that cannot load would fail every later run"
    tool = str(bin_dir / "tegrastats")
    left = [p for p in psutil.process_iter(["cmdline"]) if tool in " ".join(p.info["cmdline"] or [])]
    assert not left, "tegrastats outlived the failed run"
    again = _worker(tmp_path, onnx_file, bin_dir)
    assert not again[0]["info"]["engine_cached"] and "latencies_ms" in again[1]


def test_missing_trtexec_is_one_clear_error(tmp_path, onnx_file):
    out = _worker(tmp_path, onnx_file, tmp_path / "empty")
    assert "trtexec not found" in out[0]["error"] and "?bin=DIR" in out[0]["error"]


def test_round_interpretation_on_real_logs(shared):
    be = Trtexec()
    log = (shared / "fixtures/trtexec/01_jetson_nano_trt8201_full_build_and_bench.txt").read_text()
    power = (shared / NANO_POWER).read_text()  # POM_5V_IN 2132, 2247, 2132 mW at 1000 ms
    msg = be.interpret("round", {"log": log, "latencies_ms": [90.3], "power": power, "idle_s": 1.0,
                                 "power_interval_ms": 1000, "wall_s": 9.9})
    # walltime 3.16 s -> 3 samples wanted; after 1 idle sample only 2 remain: both are used
    assert msg.wall_s == 3.16419
    assert msg.energy_uj == pytest.approx((2247 + 2132) / 2 * 3.16419 * 1000)
    assert msg.idle_w == pytest.approx(2.132) and "POM_5V_IN" in msg.energy_source
    stop = be.interpret("stop", {"log": log})
    assert stop.device_memory_mb == 266.0


@pytest.mark.parametrize("name", ["06_xavier_nx_summary_oe4t_pr1124_TRUNCATED.txt",
                                  "08_agx_orin_partial_summary_igev_issue8_TRUNCATED.txt"])
def test_truncated_run_fails_the_candidate_with_what_is_missing(shared, name):
    log = (shared / "fixtures/trtexec" / name).read_text()
    with pytest.raises(ProfileError, match="incomplete.*missing"):
        Trtexec().interpret("round", {"log": log, "latencies_ms": [1.0], "wall_s": 1.0})


def test_ready_reports_power_mode_and_unknown_clocks():
    msg = Trtexec().interpret("ready", {"nvpmodel": "NV Power Mode: 5W\n1\n", "clocks": None,
                                               "power_tool": None, "info": {"tensorrt": "8.2.1"}})
    assert msg.info["power_mode"] == "5W" and msg.info["clocks_pinned"] is None
    assert "tegrastats not found" in msg.energy_reason
    pinned = Trtexec().interpret("ready", {"clocks": {"min_freq": 921600000, "max_freq": 921600000,
                                                             "cur_freq": 921600000}, "power_tool": "/usr/bin/x"})
    assert pinned.info["clocks_pinned"] is True and pinned.info["gpu_clock_mhz"] == 921.6


def test_dynamic_batch_onnx_is_refused_before_upload(tmp_path):
    from scbp_edge.export.onnx import export_onnx
    from scbp_edge.seeds import load_seed

    seed = load_seed("cifar-resnet20")
    export_onnx(seed.model, seed.spec.input_shape, tmp_path / "dyn.onnx", dynamic_batch=True)
    with pytest.raises(CompileError, match="dynamic"):
        Trtexec().compile(tmp_path / "dyn.onnx", tmp_path)


@pytest.mark.remote
@pytest.mark.slow
def test_jetson_target_build_over_ssh(sshd, shared, tmp_path):
    bin_dir = install(tmp_path / "bin", "8.2.1", shared / NANO_POWER)
    target = tmp_path / "jetson-emulated.toml"
    target.write_text(JETSON_TARGET)
    before = set(glob.glob("/tmp/scbp-edge.*"))
    url = f"{sshd['url']}&bin={bin_dir}&cache={tmp_path / 'engines'}"
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(target), "--data",
                          "none", "--ratios", "0,0.5", "--limit", "1", "--runs", str(tmp_path / "runs"),
                          "--device", url], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    db = next((tmp_path / "runs").glob("*/run.sqlite"))
    con = sqlite3.connect(db)
    rows = [json.loads(m) for (m,) in con.execute("SELECT measurement FROM candidates WHERE status='measured'")]
    total = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
    con.close()
    assert rows and len(rows) == total
    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert all("--workspace=256" in c and "--fp16" in c for c in calls if "--saveEngine" in c)
    assert all("--useSpinWait" in c for c in calls if "--loadEngine" in c)
    for m in rows:
        assert m["backend"] == "trtexec" and m["device"] == url
        assert m["info"]["tensorrt"] == "8.2.1" and m["info"]["power_mode"] == "MAXN"
        e = m["energy"]
        assert e["mj_per_inference"] > 0 and "POM_5V_IN" in e["source"] and e["idle_w"] == pytest.approx(2.1, 0.1)
        assert m["device_memory_mb"] >= 1 and m["latency"]["runs"] >= 10
    assert set(glob.glob("/tmp/scbp-edge.*")) == before, "remote temp dir left behind"
    assert len(list((tmp_path / "engines").glob("*.engine"))) == len(rows)  # the cache outlives the temp dir
    assert (db.parent / "plots" / "energy_vs_accuracy.png").is_file()
    # one file on the device: the cached engine is reused, nothing is rebuilt
    onnx = next((db.parent / "onnx").glob("*.onnx"))
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "profile", str(onnx), "--target", str(target),
                          "--device", url, "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    one = json.loads(res.stdout)
    assert one["info"]["engine_cached"] is True and one["energy"]["mj_per_inference"] > 0
    assert (bin_dir / "calls.log").read_text().count("--saveEngine") == len(rows)
