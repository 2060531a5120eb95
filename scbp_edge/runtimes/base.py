"""The Runtime interface shared by every runtime folder, and the capabilities each one declares.

A runtime (cf. Polygraphy's runners) compiles a model for a target, loads it,
runs it, and times it in a fresh worker process that speaks the JSON-lines
protocol of ``runtimes/onnxruntime/worker.py`` (configure -> ready, round ->
latencies, stop -> memory).  Runtimes whose workers send raw device output
(trtexec logs, tegrastats lines) turn it into that protocol in
:meth:`Runtime.interpret`, so the runner, the device pool and the run store
stay runtime-agnostic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from scbp_edge.records.codec import decode
from scbp_edge.records.worker import ANSWERS

if TYPE_CHECKING:
    from scbp_edge.targets import Target


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can do; targets are checked against it before any work."""

    #: precisions it can build and time (int8 means an explicitly quantized QDQ ONNX)
    precisions: tuple[str, ...]
    #: energy sources its worker reads ("none" is always allowed)
    energy: tuple[str, ...] = ("none",)
    #: where its worker runs: this machine and/or an SSH device
    locations: tuple[str, ...] = ("local",)
    #: batch sizes it can time; None: any (the model is exported with a dynamic batch axis)
    batch_sizes: tuple[int, ...] | None = None
    #: a Docker image can serve its models (docker/<name>.Dockerfile)
    deployable: bool = False
    #: oldest Python its device-side code (worker, serving) runs on
    device_python: tuple[int, int] = (3, 6)
    #: what compile() consumes: "onnx" (the exported file) or "torch" (the derived .pt)
    consumes: str = "onnx"
    #: the int8 QDQ form it runs fast and builds: "s8s8" (symmetric, TensorRT) or "u8s8" (ONNX Runtime's CPU kernels)
    int8_scheme: str = "s8s8"

    def refusal(self, target: Target, runtime: str) -> str | None:
        """None when ``target`` asks only for what this runtime can do, else one line naming file and field."""
        where = target.source or target.name
        checks = (
            ("precisions", [p for p in target.precisions if p not in self.precisions], self.precisions),
            ("energy", [target.energy] if target.energy not in (*self.energy, "none") else [], self.energy),
            ("location", [target.location] if target.location not in self.locations else [], self.locations),
            ("batch_sizes", [b for b in target.batch_sizes if self.batch_sizes is not None
                             and b not in self.batch_sizes], self.batch_sizes or ()),
        )
        for field, bad, have in checks:
            if bad:
                return (f"{where}: field '{field}' asks for {', '.join(map(str, bad))}, which runtime '{runtime}' "
                        f"cannot do (it can: {', '.join(map(str, have)) or 'none'})")
        return None


class Runtime(ABC):
    """Compile, load, run and time models of one inference runtime."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: files copied to SSH devices, the worker first; empty when the runtime only runs locally
    remote_files: ClassVar[tuple[Path, ...]] = ()
    #: Python modules the device must have for the remote worker
    remote_imports: ClassVar[tuple[str, ...]] = ()
    #: progress label while workers load their models (a TensorRT engine build takes minutes)
    loading: ClassVar[str] = "models loaded"
    #: the runtime whose serving code runs this runtime's models in an image (a name, resolved
    #: through the registry); None: its own ``serve.py``
    serves_with: ClassVar[str | None] = None

    @property
    def source(self) -> str:
        """What :meth:`compile` consumes: "onnx" or "torch"."""
        return self.capabilities.consumes

    def energy_problem(self, target: Target) -> str | None:
        """Why energy cannot be measured locally for ``target`` (checked before a build), or None where it can
        or cannot be told before measuring."""
        if target.energy == "none":
            return f"target '{target.name}' measures no energy (energy = \"none\")"
        return None

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when usable here, else one line saying what is missing and how to get it."""

    @abstractmethod
    def compile(self, source: Path, workdir: Path, *, precision: str, workspace_mb: int, max_batch: int = 1) -> Path:
        """Turn ``source`` (see :attr:`source`) into this runtime's artifact (may be the file itself).

        ``max_batch``: the largest batch size it will be timed at (dynamic-batch models).
        """

    @abstractmethod
    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        """An in-process handle for :meth:`run` (parity checks)."""

    @abstractmethod
    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        """Run one batch; returns the first output."""

    @abstractmethod
    def worker_argv(self) -> list[str]:
        """Command of a fresh local timing process speaking the worker protocol."""

    def worker_config(self, target: Target) -> dict[str, Any]:
        """Runtime-specific keys added to the worker's first (configuration) line."""
        return {}

    def interpret(self, kind: str, msg: dict[str, Any]) -> Any:
        """A worker's raw ``ready``/``round``/``stop`` answer as its record (``records/worker.py``).

        Workers that speak the protocol's fields need nothing more; a runtime whose worker reports raw tool
        output (trtexec's logs) parses it here.  A value that does not fit raises RecordError.
        """
        return decode(ANSWERS[kind], msg, f"worker {kind}")

    @property
    def remote_worker(self) -> Path | None:
        """The worker script copied to devices (the first of :attr:`remote_files`)."""
        return self.remote_files[0] if self.remote_files else None

    # -- deployment ---------------------------------------------------------------------------------
    #: the serving module (``serve.py``: a ``Session`` class) and the stdlib modules it needs beside it
    serve_files: ClassVar[tuple[Path, ...]] = ()
    #: the image's base when the target names none ("" : the target must, e.g. an L4T release)
    default_base_image: ClassVar[str] = ""

    def session_class(self) -> Any:
        """The serving ``Session`` class (for ``scbp-edge serve`` in this process)."""
        raise NotImplementedError(f"runtime '{self.name}' has no serving code")
