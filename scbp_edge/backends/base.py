"""The Backend interface shared by every runtime (cf. Polygraphy's runners)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class Backend(ABC):
    """Compile an ONNX file for a target, load it, run it, and time it in a worker process."""

    name: ClassVar[str]

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when usable here, else one line saying what is missing and how to get it."""

    @abstractmethod
    def compile(self, onnx_path: Path, workdir: Path, *, precision: str, workspace_mb: int) -> Path:
        """Turn ``onnx_path`` into this runtime's artifact (may be the ONNX file itself)."""

    @abstractmethod
    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        """An in-process handle for :meth:`run` (used for parity checks and serving)."""

    @abstractmethod
    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        """Run one batch; returns the first output."""

    @abstractmethod
    def worker_argv(self) -> list[str]:
        """Command of a fresh timing process speaking the JSON-lines protocol of profile/worker."""
