"""PyTorch on a CUDA GPU: the fallback of ``desktop-gpu`` where TensorRT is not installed.

It times the derived PyTorch model itself (the run's ``models/<id>.pt``), so
every CUDA machine with PyTorch measures, TensorRT or not.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.runtimes.base import Capabilities, Runtime

MB = 1024 * 1024


class TorchSession:
    """A derived model on one device, timed per inference (CUDA events on a GPU, a wall clock on the CPU)."""

    runtime_module = "torch"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TorchSession:
        """From a timing worker's configuration line."""
        return cls(cfg["model"], cfg.get("device", "cuda"), cfg.get("precision", "fp32"), int(cfg.get("batch", 1)))

    def __init__(self, path: str, device: str = "cuda", precision: str = "fp32", batch: int = 1) -> None:
        import torch

        from scbp_edge.derive.io import load_derived

        model, meta = load_derived(path)
        self.torch, self.device_kind = torch, torch.device(device).type
        self.dtype = torch.float16 if precision == "fp16" and self.device_kind == "cuda" else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()
        shape = tuple(meta["seed"]["input_shape"])
        self.host = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0))
        if self.device_kind == "cuda":
            self.host = self.host.pin_memory()
            torch.cuda.reset_peak_memory_stats()
        self.device = torch.device(device)
        self.artifact_bytes = Path(path).stat().st_size
        props = torch.cuda.get_device_properties(self.device) if self.device_kind == "cuda" else None
        self.pci_bus_id = _pci_bus_id(props)
        self.info = {"runtime": f"torch {torch.__version__}", "cuda": torch.version.cuda,
                     "gpu": props.name if props else None, "precision": "fp16" if self.dtype == torch.float16
                     else "fp32"}

    @property
    def _no_grad(self):
        return self.torch.inference_mode()

    def timed_run(self) -> float:
        """One inference including the copy in and out; milliseconds."""
        torch = self.torch
        with self._no_grad:
            if self.device_kind != "cuda":
                t = time.perf_counter()
                self.model(self.host.to(self.dtype))
                return (time.perf_counter() - t) * 1000.0
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.model(self.host.to(self.device, non_blocking=True).to(self.dtype))
            out.to("cpu", non_blocking=True)
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

    def device_memory_mb(self) -> float | None:
        if self.device_kind != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / MB


def _pci_bus_id(props: Any) -> str | None:
    """NVML addresses GPUs by PCI bus id; CUDA's numbering may differ (CUDA_VISIBLE_DEVICES)."""
    if props is None or not hasattr(props, "pci_bus_id"):
        return None
    return f"{getattr(props, 'pci_domain_id', 0):08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"


class TorchCuda(Runtime):
    """Times the derived PyTorch model on the local CUDA GPU (not deployable: images run ONNX)."""

    name = "torch-cuda"
    capabilities = Capabilities(precisions=("fp32", "fp16"), energy=("nvml",), locations=("local",),
                                batch_sizes=None, deployable=False, device_python=(3, 10), consumes="torch")

    def unavailable_reason(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (CPU-only build)"
            return f"PyTorch sees no CUDA GPU (torch {torch.__version__}, CUDA build {build}); use --target cpu"
        return None

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp32", workspace_mb: int = 0,
                max_batch: int = 1) -> Path:
        return source  # the derived model file is the artifact (precision goes to the worker's config)

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        return TorchSession(str(artifact), "cuda")

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        torch = handle.torch
        with torch.inference_mode():
            out = handle.model(torch.from_numpy(x).to(handle.device, handle.dtype))
        return out.float().cpu().numpy()

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "scbp_edge.runtimes.common.gpu_worker", f"{__name__}:TorchSession"]

    def worker_config(self, target) -> dict[str, Any]:
        return {"power_interval_ms": target.measure.power_interval_ms, "idle_seconds": target.measure.idle_seconds}
