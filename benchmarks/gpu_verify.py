"""Issue-5 GPU check in one call: every GPU-side path of scbp-edge verified and timed on this machine.

On a CUDA machine it derives the cifar-resnet56 space (0, 0.25, 0.5 per stage:
27 configurations, 18 distinct networks; ../shared weights when present), then
  1. checks the PyTorch CUDA backend's output against the CPU model,
  2. measures every candidate with the ``torch-cuda`` backend through the same
     interleaved runner the build uses (fp16, CUDA events, max_memory_allocated),
  3. reads NVML energy per inference (counter or power sampling) and idle power,
  4. if TensorRT + cuda-python are installed: builds engines (cache hit checked),
     checks parity with ONNX Runtime and measures them too,
  5. reports Kendall tau between MACs and measured GPU latency.
Without a CUDA GPU it says so and records the GPU path as unverified.

Writes benchmarks/results/gpu_verify.{json,md} (or $OUT/ when OUT is set).
Options: --device cpu runs steps 1-2 on the CPU to check this script itself
(about 4 minutes on 2 cores; its figures are CPU figures, not GPU ones).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, SHARED

from scbp_edge.lab import Item


def _space(work: Path):
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import export_onnx, save_derived

    ckpt = SHARED / "seeds/cifar10-resnet/resnet56-4bfd9763.th"
    wb = Workbench(SeedOptions("cifar-resnet56", str(ckpt) if ckpt.is_file() else None))
    rows = []
    for c in wb.space("0,0.25,0.5"):
        _, model = wb.candidate(c.ratios)
        pt = save_derived(work / f"{c.id}.pt", model, wb.seed.spec, ignored=wb.deriver.ignored,
                          keep=wb.deriver.plan(c.ratios), ratios=c.ratios, candidate_id=c.id)
        export_onnx(model, wb.seed.spec.input_shape, work / f"{c.id}.onnx")
        rows.append({"id": c.id, "ratios": c.ratios, "macs": c.macs, "params": c.params, "pt": pt,
                     "onnx": work / f"{c.id}.onnx"})
    return wb, rows, ckpt.is_file()


def _measure(backend, items, target, extra=None) -> dict:
    from scbp_edge.lab import profile_interleaved

    got: dict = {}
    profile_interleaved(items, target, backend=backend, worker_argv=backend.worker_argv(), extra_config=extra,
                        on_result=lambda k, m, e: got.__setitem__(k, (m, e)))
    return got


def _parity_torch(rows, device: str) -> float:
    import torch

    from scbp_edge.lab import TorchSession, load_derived

    model, _ = load_derived(rows[0]["pt"])
    sess = TorchSession(str(rows[0]["pt"]), device, "fp32")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        got = sess.model(x.to(sess.device)).cpu()
    # relative to the largest logit: random-weight logits reach 1e4, and cuDNN's default TF32 is ~5e-4 relative
    return float((ref - got).abs().max()), float((ref - got).abs().max() / ref.abs().max())


def _tensorrt(rows, target, results: dict) -> None:
    from scbp_edge.lab import TensorRT

    be = TensorRT()
    reason = be.unavailable_reason()
    if reason:
        results["tensorrt"] = {"status": "not run", "reason": reason}
        return
    import onnxruntime as ort

    t0 = time.perf_counter()
    engines = {r["id"]: be.compile(r["onnx"], r["onnx"].parent, precision=target.precision,
                                   workspace_mb=target.workspace_mb) for r in rows}
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    be.compile(rows[0]["onnx"], rows[0]["onnx"].parent, precision=target.precision, workspace_mb=target.workspace_mb)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(rows[0]["onnx"]), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = float(np.abs(be.run(be.load(engines[rows[0]["id"]]), x) - ref).max())
    got = _measure(be, [Item(k, v) for k, v in engines.items()], target)
    results["tensorrt"] = {"status": "run", "engine_build_s_total": build_s,
                           "cached_compile_s": time.perf_counter() - t0, "max_abs_diff_vs_ort": diff,
                           "candidates": _rows(rows, got)}


def _rows(rows, got) -> list[dict]:
    out = []
    for r in rows:
        m, err = got.get(r["id"], (None, "not measured"))
        out.append({"id": r["id"], "macs": r["macs"], "params": r["params"], "error": err,
                    **({} if m is None else {"p50_ms": m.latency.p50_ms, "p90_ms": m.latency.p90_ms,
                                             "cv": m.latency.cv, "device_memory_mb": m.device_memory_mb,
                                             "energy_mj": m.energy.mj_per_inference,
                                             "above_idle_mj": m.energy.above_idle_mj, "idle_w": m.energy.idle_w,
                                             "energy_source": m.energy.source, "energy_reason": m.energy.reason,
                                             "info": m.info})})
    return out


def main() -> int:
    from scbp_edge.lab import TorchCuda, kendall_tau, load_target

    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "host": platform.node(), "device": device}
    reason = TorchCuda().unavailable_reason() if device == "cuda" else None
    if reason:
        results.update(status="unverified", reason=reason)
        return _write(out_dir, results)
    import torch

    results["gpu"] = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU self-check)"
    work = ROOT / "benchmarks" / ".work" / "gpu"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    wb, rows, trained = _space(work)
    results.update(seed="cifar-resnet56", trained_weights=trained, candidates=len(rows),
                   derive_export_s=time.perf_counter() - t0)
    results["torch_parity_max_abs_diff"], results["torch_parity_relative"] = _parity_torch(rows, device)
    target = load_target("desktop-gpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 3, 50, 0.3
    t0 = time.perf_counter()
    got = _measure(TorchCuda(), [Item(r["id"], r["pt"]) for r in rows], target,
                   {"device": device} if device != "cuda" else None)
    results["torch_cuda"] = {"measure_s": time.perf_counter() - t0, "candidates": _rows(rows, got)}
    ok = [r for r in results["torch_cuda"]["candidates"] if "p50_ms" in r]
    results["torch_cuda"]["kendall_tau_macs_vs_p50"] = kendall_tau([r["macs"] for r in ok], [r["p50_ms"] for r in ok])
    if device == "cuda":
        _tensorrt(rows, target, results)
    results["status"] = "verified" if device == "cuda" and len(ok) == len(rows) else "partial"
    return _write(out_dir, results)


# Everything below is written against TensorRT's sources and NVIDIA's documentation and tested on the CPU
# (device emulator, structural checks), but only real hardware can show it works.
NEEDS_HARDWARE = (
    "TensorRT engine build from the shared recipe (scbp_edge/runtimes/common/trt_engine.py) on the 8.x, 10.x "
    "and 11.x Python APIs, and its cache key on a real GPU",
    "CUDA-event timing, pinned host buffers, and the bool returns of set_input_shape / set_tensor_address / "
    "execute_async_v3 raised on a real failure",
    "engine memory taken from the engine (device memory size plus I/O), and one optimisation profile for "
    "dynamic shapes",
    "NVML energy: the handle opened by the CUDA device's PCI bus id, idle power measured before each round",
    "int8 QDQ models built by TensorRT as explicit quantization (s8s8 passes the structural Q/DQ check only), "
    "and NVIDIA ModelOpt's ONNX PTQ compared with ONNX Runtime's",
    "fp16 engines on a Jetson Nano (TensorRT 8.2), and TensorRT 11's strongly typed fp16 path",
    "trtexec on a real Jetson: 8.2/8.4 warm-up entries dropped from --exportTimes, 11.x's "
    "--includeDataTransfers --noCudaGraph, tegrastats energy over the timed window",
    "the Jetson (L4T r32.7 / r35 / r36) and desktop-GPU images: built, started with --runtime nvidia / --gpus all, "
    "and the served TensorRT runtime (ctypes libcudart, one execution context per thread) answering /predict",
)


def _write(out_dir: Path, res: dict) -> int:
    (out_dir / "gpu_verify.json").write_text(json.dumps(res, indent=2, default=str))
    lines = ["# GPU verification (issue 5)", "", f"- Date: {res['date']}; host: {res['host']}.",
             f"- Status: **{res['status']}**" + (f" - {res['reason']}" if res.get("reason") else "") + "."]
    if res["status"] == "unverified":
        lines.append("- The GPU path (torch-cuda, tensorrt, NVML energy) has NOT been run on a GPU: no figure here "
                     "comes from one. Run `python benchmarks/gpu_verify.py` on a CUDA machine.")
    else:
        lines += [f"- GPU: {res['gpu']}; seed {res['seed']} (trained weights: {res['trained_weights']}), "
                  f"{res['candidates']} candidates; PyTorch parity vs CPU: max |diff| "
                  f"{res['torch_parity_max_abs_diff']:.2e} "
                  f"({res.get('torch_parity_relative', float('nan')):.1e} of the largest logit).",
                  f"- Kendall tau, MACs vs measured p50 (torch-cuda): {res['torch_cuda']['kendall_tau_macs_vs_p50']}.",
                  f"- TensorRT: {json.dumps({k: v for k, v in res.get('tensorrt', {}).items() if k != 'candidates'})}",
                  "", "| id | backend | p50 ms | p90 ms | CV | device MB | energy mJ | above idle mJ | error |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for be in ("torch_cuda", "tensorrt"):
            for r in (res.get(be) or {}).get("candidates", []):
                f = lambda k, r=r: "" if r.get(k) is None else f"{r[k]:.3g}"  # noqa: E731
                lines.append(f"| {r['id']} | {be} | {f('p50_ms')} | {f('p90_ms')} | {f('cv')} | "
                             f"{f('device_memory_mb')} | {f('energy_mj')} | {f('above_idle_mj')} | "
                             f"{r.get('error') or r.get('energy_reason') or ''} |")
    lines += ["", "## What still needs a GPU or a Jetson (never run by this project's sessions)", ""]
    lines += [f"- {x}" for x in NEEDS_HARDWARE]
    (out_dir / "gpu_verify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
