"""The Backend interface shared by every runtime (cf. Polygraphy's runners)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from scbp_edge.targets import Target


class Backend(ABC):
    """Compile a model for a target, load it, run it, and time it in a worker process.

    Timing always happens in a fresh worker process that speaks the JSON-lines
    protocol of ``profile/ort_worker.py`` (configure -> ready, round -> latencies,
    stop -> memory).  Backends whose workers send raw device output (trtexec
    logs, tegrastats lines) turn it into that protocol in :meth:`interpret`, so
    the runner, the device pool and the run store stay backend-agnostic.
    """

    name: ClassVar[str]
    #: what compile() consumes: "onnx" (the exported file) or "torch" (the derived .pt file)
    source: ClassVar[str] = "onnx"
    #: self-contained worker copied to SSH devices; None when the backend only runs locally
    remote_worker: ClassVar[Path | None] = None
    #: Python modules the device must have for ``remote_worker``
    remote_imports: ClassVar[tuple[str, ...]] = ()
    #: progress label while workers load their models (a TensorRT engine build takes minutes)
    loading: ClassVar[str] = "models loaded"

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when usable here, else one line saying what is missing and how to get it."""

    @abstractmethod
    def compile(self, source: Path, workdir: Path, *, precision: str, workspace_mb: int) -> Path:
        """Turn ``source`` (see :attr:`source`) into this runtime's artifact (may be the file itself)."""

    @abstractmethod
    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        """An in-process handle for :meth:`run` (used for parity checks and serving)."""

    @abstractmethod
    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        """Run one batch; returns the first output."""

    @abstractmethod
    def worker_argv(self) -> list[str]:
        """Command of a fresh local timing process speaking the worker protocol."""

    def worker_config(self, target: Target) -> dict[str, Any]:
        """Backend-specific keys added to the worker's first (configuration) line."""
        return {}

    def interpret(self, kind: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Turn a worker's raw ``ready``/``round``/``stop`` answer into the protocol's fields."""
        return msg
