"""ONNX Runtime on the CPU (CPUExecutionProvider)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.backends.base import Backend

WORKER = Path(__file__).resolve().parents[1] / "profile" / "ort_worker.py"


class OnnxRuntimeBackend(Backend):
    """The CPU backend: the artifact is the ONNX file; timing runs ``ort_worker.py``."""

    name = "onnxruntime"
    remote_worker = WORKER
    remote_imports = ("numpy", "onnxruntime")

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def compile(self, onnx_path: Path, workdir: Path, *, precision: str = "fp32", workspace_mb: int = 0) -> Path:
        # ORT optimises the graph at session creation; the ONNX file is the artifact.
        return onnx_path

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        return ort.InferenceSession(str(artifact), opts, providers=["CPUExecutionProvider"])

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        return handle.run(None, {handle.get_inputs()[0].name: x})[0]

    def worker_argv(self) -> list[str]:
        return [sys.executable, str(WORKER)]
