"""Local GPU timing worker for the ``torch-cuda`` and ``tensorrt`` runtimes (protocol of onnxruntime/worker.py).

Run as ``python -m scbp_edge.runtimes.common.gpu_worker module:SessionClass`` (the
runtime's timing session: ``from_config(cfg)``, ``timed_run()``, ``device_memory_mb()``,
``pci_bus_id``).  Latency comes from CUDA events around each inference
(host-to-device copy, compute, copy back), energy from NVML over each round on
the GPU the session runs on (found by PCI bus id), idle power from a pause
just before each round (other workers may be loading models on the same GPU
earlier), and device memory from the runtime (``torch.cuda.max_memory_allocated``,
or the engine's own activation size plus its I/O buffers).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _rss(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(session_path: str) -> None:
    """``session_path`` ("module:Class") names the backend's session class; it is never a user input."""
    import importlib

    from scbp_edge.runtimes.common.nvml import NvmlEnergy

    cfg = json.loads(sys.stdin.readline())
    mod_name, cls_name = session_path.split(":")
    session_cls = getattr(importlib.import_module(mod_name), cls_name)
    importlib.import_module(session_cls.runtime_module)
    baseline = _rss("VmRSS")  # after the runtime's import: memory_mb is what the model adds
    t0 = time.perf_counter()
    sess = session_cls.from_config(cfg)
    load_s = time.perf_counter() - t0
    for _ in range(int(cfg.get("warmup", 10))):
        sess.timed_run()
    if sess.device_kind != "cuda":
        energy = None
        reason = "the model runs on the CPU in this worker (no GPU energy)"
    else:
        energy = NvmlEnergy(sess.pci_bus_id, interval_ms=int(cfg.get("power_interval_ms", 100)))
        reason = energy.reason
    idle_s = float(cfg.get("idle_seconds", 1.0))
    _reply({"ready": True, "baseline_rss": baseline, "load_s": load_s, "energy_source": energy and energy.source,
            "energy_reason": reason, "info": sess.info, "artifact_bytes": sess.artifact_bytes})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("cmd") == "stop":
            _reply({"peak_rss": _rss("VmHWM"), "device_memory_mb": sess.device_memory_mb()})
            return
        lat: list[float] = []
        idle_w = None
        if energy and not reason:
            idle_w = energy.idle_w(idle_s)  # just before this round: the GPU is quiet now
            energy.start()
        start = time.perf_counter()
        while len(lat) < int(cmd["min_runs"]) or time.perf_counter() - start < float(cmd["min_seconds"]):
            lat.append(sess.timed_run())
        wall = time.perf_counter() - start
        uj = energy.stop() if energy and not reason else None
        _reply({"latencies_ms": lat, "wall_s": wall, "energy_uj": uj, "idle_w": idle_w})


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as exc:  # noqa: BLE001 - report, never hang the coordinator
        _reply({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        sys.exit(1)
