"""ONNX Runtime on CPUs (CPUExecutionProvider), here or on an SSH device.

``worker.py`` is the self-contained timing worker (Python 3.6+, numpy and
onnxruntime only) and ``serve.py`` the serving session copied into images.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.runtimes.base import Capabilities, Runtime

HERE = Path(__file__).resolve().parent


class OnnxRuntime(Runtime):
    """The CPU runtime: the artifact is the ONNX file (fp32, or int8 as an explicit QDQ graph)."""

    name = "onnxruntime"
    capabilities = Capabilities(precisions=("fp32", "int8"), energy=("rapl",), locations=("local", "ssh"),
                                batch_sizes=None, deployable=True, device_python=(3, 6), int8_scheme="u8s8")
    remote_files = (HERE / "worker.py",)
    remote_imports = ("numpy", "onnxruntime")
    default_base_image = "python:3.11-slim-bookworm"
    serve_files = (HERE / "serve.py",)

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def energy_problem(self, target) -> str | None:  # noqa: ANN001 - a Target
        """RAPL is read by the worker; the same check, here, before any work."""
        import os

        from scbp_edge.runtimes.onnxruntime.worker import Rapl

        if target.energy == "rapl":
            return Rapl(os.environ.get("SCBP_RAPL_ROOT") or "/sys/class/powercap").reason
        return super().energy_problem(target)

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp32", workspace_mb: int = 0,
                max_batch: int = 1) -> Path:
        # ORT optimises the graph at session creation; the ONNX file (QDQ for int8) is the artifact.
        return source

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        from scbp_edge.runtimes.onnxruntime.serve import Session

        return Session(str(artifact), threads=threads)

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        return handle.run(x)

    def worker_argv(self) -> list[str]:
        return [sys.executable, str(HERE / "worker.py")]

    def session_class(self) -> Any:
        from scbp_edge.runtimes.onnxruntime.serve import Session

        return Session
