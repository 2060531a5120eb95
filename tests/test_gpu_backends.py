"""Local GPU backends (torch-cuda, tensorrt) and NVML energy.

The worker protocol of the PyTorch backend is exercised here on the CPU; the
GPU/TensorRT checks run only where a CUDA GPU (and TensorRT) exists, and skip
with the reason otherwise.  benchmarks/gpu_verify.py is the one-call GPU check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.derive.io import save_derived
from scbp_edge.errors import BackendUnavailable
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.runtimes import get_runtime, runtime_for
from scbp_edge.runtimes.common.nvml import NvmlEnergy
from scbp_edge.runtimes.tensorrt import TensorRT
from scbp_edge.runtimes.torch_cuda import TorchCuda
from scbp_edge.targets import load_target

CUDA = TorchCuda().unavailable_reason()
TRT = TensorRT().unavailable_reason()


def _derived(tmp: Path, ratios=(0.5, 0.25, 0.0)) -> tuple[Path, Path]:
    wb = Workbench(SeedOptions())
    cand, model = wb.candidate(list(ratios))
    pt = save_derived(tmp / f"{cand.id}.pt", model, wb.seed.spec, ignored=wb.deriver.ignored,
                      keep=wb.deriver.plan(list(ratios)), ratios=list(ratios), candidate_id=cand.id)
    from scbp_edge.export.onnx import export_onnx

    export_onnx(model, wb.seed.spec.input_shape, tmp / f"{cand.id}.onnx")
    return pt, tmp / f"{cand.id}.onnx"


def _measure(backend, items, target, extra=None) -> dict:
    got: dict = {}
    profile_interleaved(items, target, backend=backend, worker_argv=backend.worker_argv(), extra_config=extra,
                        on_result=lambda k, m, e: got.__setitem__(k, (m, e)))
    return got


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_torch_worker_protocol_on_the_cpu(tmp_path):
    pt, _ = _derived(tmp_path)
    target = load_target("desktop-gpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 2, 5, 0.05
    target.measure.warmup = 2
    got = _measure(TorchCuda(), [Item("a", pt)], target, {"device": "cpu"})
    m, err = got["a"]
    assert err is None and m.backend == "torch-cuda" and m.latency.runs >= 10
    assert m.model_size_mb == pytest.approx(pt.stat().st_size / 2**20)
    assert m.energy.mj_per_inference is None and "CPU" in m.energy.reason
    assert m.info["runtime"].startswith("torch ") and m.memory_mb is not None


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_derived_file_that_is_not_one_fails_alone(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    good, _ = _derived(tmp_path)
    target = load_target("desktop-gpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 1, 3, 0.01
    got = _measure(TorchCuda(), [Item("bad", bad), Item("good", good)], target, {"device": "cpu"})
    assert got["bad"][0] is None and "not a scbp-edge derived model" in got["bad"][1]
    assert got["good"][0] is not None




@pytest.mark.skipif(CUDA is None, reason="a CUDA GPU is visible: the no-GPU messages are not shown here")
def test_without_a_gpu_each_backend_says_why_in_one_line(tmp_path):
    for name, words in (("torch-cuda", "no CUDA GPU"), ("tensorrt", "tensorrt")):
        with pytest.raises(BackendUnavailable, match=words) as exc:
            get_runtime(name)
        assert "\n" not in str(exc.value)
    with pytest.raises(BackendUnavailable, match="tensorrt.*fallback.*torch-cuda"):
        runtime_for(load_target("desktop-gpu"))
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", "desktop-gpu",
                          "--runs", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "torch-cuda" in res.stderr
    assert not list(tmp_path.iterdir()), "a run directory was left for a build that could not start"


def test_nvml_names_why_there_is_no_energy():
    e = NvmlEnergy("00000000:01:00.0")
    if e.reason is None:
        pytest.skip(f"NVML works here ({e.source})")
    assert "NVML" in e.reason or "nvidia-ml-py" in e.reason
    assert e.stop() is None and e.idle_w(0.01) is None


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorrt", "pycuda", "cuda", "pynvml", "ray"}:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
import scbp_edge.runtimes.tensorrt, scbp_edge.runtimes.torch_cuda, scbp_edge.runtimes.trtexec
import scbp_edge.runtimes.common.nvml
from scbp_edge.cli.main import main
sys.argv = ["scbp-edge"] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize("args", [["--help"], ["targets"]])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_cli_works_without_any_optional_runtime(args):
    res = subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.gpu
@pytest.mark.skipif(CUDA is not None, reason=f"no CUDA GPU: {CUDA}")
def test_torch_cuda_measures_latency_memory_and_energy(tmp_path):
    pt, _ = _derived(tmp_path)
    target = load_target("desktop-gpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 2, 20, 0.2
    m, err = _measure(TorchCuda(), [Item("a", pt)], target)["a"]
    assert err is None and m.device_memory_mb > 0 and m.info["gpu"]
    readable = _nvml_reads_power()
    if readable:  # NVML reads this GPU's power: energy must be a measured number
        assert m.energy.mj_per_inference is not None and m.energy.mj_per_inference > 0, m.energy.reason
    elif readable is False:  # it cannot: no number, and a reason that names what is missing
        assert m.energy.mj_per_inference is None and m.energy.reason
        assert "NVML" in m.energy.reason or "nvidia-ml-py" in m.energy.reason, m.energy.reason


def _nvml_reads_power() -> bool | None:
    """Asked of NVML directly: True where it reads the only GPU's power, False where not, None with several GPUs."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() != 1:
            return None
        pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0))
        return True
    except Exception:  # ImportError or any NVMLError: no sensor this process can read
        return False


@pytest.mark.gpu
@pytest.mark.trt
@pytest.mark.skipif(TRT is not None, reason=f"TensorRT cannot run here: {TRT}")
def test_tensorrt_engine_matches_onnxruntime_and_is_cached(tmp_path):
    import onnxruntime as ort

    _, onnx = _derived(tmp_path)
    be = TensorRT()
    engine = be.compile(onnx, tmp_path, precision="fp32", workspace_mb=512)
    stamp = engine.stat().st_mtime_ns
    assert be.compile(onnx, tmp_path, precision="fp32", workspace_mb=512) == engine
    assert engine.stat().st_mtime_ns == stamp, "the cached engine was rebuilt"
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = be.run(be.load(engine), x)
    assert np.abs(out - ref).max() < 1e-2
    target = load_target("desktop-gpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 2, 20, 0.2
    m, err = _measure(be, [Item("a", engine)], target)["a"]
    assert err is None and m.device_memory_mb > 0 and m.model_size_mb > 0


def test_candidate_task_keeps_the_model_the_torch_backend_times(tmp_path):
    import onnxruntime as ort
    import torch

    from scbp_edge.derive.io import load_derived, write_derived
    from scbp_edge.records.task import DeriveContext, DerivedNetwork, NetworkJob
    from scbp_edge.tasks import evaluate_network, seed_payload

    wb = Workbench(SeedOptions())
    int8 = {"calibration": "minmax", "scheme": "u8s8"}
    job = NetworkJob("c", (0.5, 0.0, 0.25), ("fp32",))
    res = evaluate_network(job, DeriveContext(seed_payload(wb), None, False, 1, int8, keep_model=True))
    assert isinstance(res, DerivedNetwork) and res.weights is not None, res
    w = res.weights
    pt = write_derived(tmp_path / "c.pt", w.state, wb.seed.spec, ignored=w.ignored, keep=w.keep,
                       ratios=list(w.ratios), candidate_id="c")
    model, meta = load_derived(pt)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(res.onnx.data, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() < 1e-4 and meta["ratios"] == [0.5, 0.0, 0.25]
    assert evaluate_network(job, DeriveContext(seed_payload(wb), None, False, 1, int8)).weights is None
