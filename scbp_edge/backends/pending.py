"""GPU/Jetson backends whose implementation is not in this version yet.

They are registered so that target files naming them validate, and so that
choosing them says plainly that they cannot run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.backends.base import Backend


class _Pending(Backend):
    needs = ""

    def unavailable_reason(self) -> str | None:
        return f"the {self.name} backend is not implemented in scbp-edge {__import__('scbp_edge').__version__} yet " \
               f"(it will need {self.needs}); use --target cpu"

    def compile(self, onnx_path: Path, workdir: Path, *, precision: str = "fp16", workspace_mb: int = 0) -> Path:
        raise NotImplementedError(self.unavailable_reason())

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        raise NotImplementedError(self.unavailable_reason())

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self.unavailable_reason())

    def worker_argv(self) -> list[str]:
        raise NotImplementedError(self.unavailable_reason())


class TensorRTBackend(_Pending):
    name = "tensorrt"
    needs = "tensorrt and cuda-python with an NVIDIA GPU"


class TrtexecBackend(_Pending):
    name = "trtexec"
    needs = "trtexec on a Jetson reached with --device ssh://"


class TorchCudaBackend(_Pending):
    name = "torch-cuda"
    needs = "a CUDA GPU"
