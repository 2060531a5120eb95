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
    from scbp_edge.targets import Target

# name -> "module:Class"; a new runtime is one module plus one line here.
_REGISTRY: dict[str, str] = {
    "onnxruntime": "scbp_edge.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "scbp_edge.backends.tensorrt:TensorRTBackend",
    "trtexec": "scbp_edge.backends.trtexec:TrtexecBackend",
    "torch-cuda": "scbp_edge.backends.torch_cuda:TorchCudaBackend",
}


def backend_names() -> list[str]:
    """Registered backend names."""
    return sorted(_REGISTRY)


def get_backend(name: str, *, remote: bool = False) -> Backend:
    """Instantiate backend ``name``; raises BackendUnavailable (one line) if it cannot run here.

    ``remote``: the backend will time on SSH devices, so what matters is that
    it has a self-contained remote worker, not what this machine has installed.
    """
    if name not in _REGISTRY:
        raise TargetError(f"unknown backend '{name}'; known: {', '.join(backend_names())}")
    mod_name, cls_name = _REGISTRY[name].split(":")
    backend = getattr(importlib.import_module(mod_name), cls_name)()
    if remote:
        if backend.remote_worker is None:
            raise BackendUnavailable(f"backend '{name}' cannot time on an SSH device; drop --device to run it here")
        return backend
    reason = backend.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend '{name}' is unavailable on this machine: {reason}")
    return backend


def backend_for(target: Target, *, remote: bool = False) -> Backend:
    """The target's backend, else its ``fallback_backend``; one line with both reasons if neither runs.

    ``remote``: timed on SSH devices; a target that only runs on a device needs it.
    """
    if target.location == "ssh" and not remote:
        raise TargetError(f"target '{target.name}' runs on a device: pass --device ssh://user@host[:port]")
    try:
        return get_backend(target.backend, remote=remote)
    except BackendUnavailable as first:
        if not target.fallback_backend:
            raise
        try:
            return get_backend(target.fallback_backend, remote=remote)
        except BackendUnavailable as second:
            raise BackendUnavailable(f"target '{target.name}': {first}; fallback {second}") from None
