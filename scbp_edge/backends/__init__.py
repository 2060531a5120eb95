"""Backends: one interface (compile, load, run, timing worker), registered by name.

Modules are imported lazily so that optional runtimes (TensorRT, CUDA) are
only needed by the targets that use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from scbp_edge.errors import BackendUnavailable, TargetError

if TYPE_CHECKING:
    from scbp_edge.backends.base import Backend

# name -> "module:Class"; a new runtime is one module plus one line here.
_REGISTRY: dict[str, str] = {
    "onnxruntime": "scbp_edge.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "scbp_edge.backends.pending:TensorRTBackend",
    "trtexec": "scbp_edge.backends.pending:TrtexecBackend",
    "torch-cuda": "scbp_edge.backends.pending:TorchCudaBackend",
}


def backend_names() -> list[str]:
    """Registered backend names."""
    return sorted(_REGISTRY)


def get_backend(name: str) -> Backend:
    """Instantiate backend ``name``; raises BackendUnavailable (one line) if it cannot run here."""
    if name not in _REGISTRY:
        raise TargetError(f"unknown backend '{name}'; known: {', '.join(backend_names())}")
    mod_name, cls_name = _REGISTRY[name].split(":")
    backend = getattr(importlib.import_module(mod_name), cls_name)()
    reason = backend.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend '{name}' is unavailable on this machine: {reason}")
    return backend
