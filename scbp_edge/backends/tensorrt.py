"""TensorRT on the local NVIDIA GPU (``pip install 'scbp-edge[tensorrt]'``: tensorrt + cuda-python).

Engines are built from each candidate's ONNX (fp16 where the GPU has fast
fp16, else fp32; workspace from the target) and cached by (ONNX sha256,
TensorRT version, GPU name, precision, workspace), because an engine only
runs on the GPU and TensorRT version it was built with.  Both the 8.x binding
API and the 8.5+/10.x tensor API are handled.  Everything imports lazily.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.backends.base import Backend
from scbp_edge.errors import CompileError

MB = 1024 * 1024


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result: tuple) -> Any:
    """cuda-python returns (error, values...); raise on error, return the values."""
    err, *vals = result
    if int(err) != 0:
        raise CompileError(f"CUDA call failed: {err}")
    return vals[0] if len(vals) == 1 else tuple(vals)


def gpu_name() -> str:
    props = _check(_cudart().cudaGetDeviceProperties(0))
    return props.name.decode(errors="replace").strip("\x00") if isinstance(props.name, bytes) else str(props.name)


def engine_key(onnx_bytes: bytes, trt_version: str, gpu: str, precision: str, workspace_mb: int) -> str:
    """Cache key of an engine: it is only valid for this model, TensorRT version, GPU and build settings."""
    ident = json.dumps([hashlib.sha256(onnx_bytes).hexdigest(), trt_version, gpu, precision, workspace_mb])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def build_engine(onnx_bytes: bytes, name: str, precision: str, workspace_mb: int) -> tuple[bytes, str]:
    """Serialized engine and the precision actually used.

    TensorRT 8.x-10.x: the fp16 builder flag, where the GPU has fast fp16.
    11.x removed weak typing, so the ONNX is converted to fp16 first.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    if precision == "fp16" and major >= 11:  # strongly typed only: the model itself must be fp16
        from scbp_edge.export.fp16 import to_fp16

        onnx_bytes, used = to_fp16(onnx_bytes, name), "fp16 (fp16 ONNX, strongly typed)"
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CompileError(f"TensorRT cannot parse {name}: {errs[:300]}")
    config = builder.create_builder_config()
    if workspace_mb:
        if hasattr(config, "set_memory_pool_limit"):  # 8.4+
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb * MB)
        else:
            config.max_workspace_size = workspace_mb * MB
    used = "fp32"
    if precision == "fp16" and major < 11 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # weakly typed: TensorRT may pick fp16 kernels
        used = "fp16"
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if any(d < 0 for d in inp.shape):  # dynamic batch: one profile for batch 1
            profile = builder.create_optimization_profile()
            fixed = tuple(1 if d < 0 else d for d in inp.shape)
            profile.set_shape(inp.name, fixed, fixed, fixed)
            config.add_optimization_profile(profile)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise CompileError(f"TensorRT could not build an engine for {name} (see the TensorRT log above)")
    return bytes(data), used


class TrtSession:
    """A deserialized engine with device buffers, timed with CUDA events around copy-in, execute, copy-out."""

    runtime_module = "tensorrt"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TrtSession:
        """From a timing worker's configuration line."""
        return cls(cfg["model"], int(cfg.get("batch", 1)))

    def __init__(self, path: str, batch: int = 1) -> None:
        import tensorrt as trt

        self.cudart = cudart = _cudart()
        free0, _ = _check(cudart.cudaMemGetInfo())
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise CompileError(f"{path}: TensorRT could not load the engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.io = self._bind(trt, batch)
        free1, _ = _check(cudart.cudaMemGetInfo())
        self.device_bytes = max(0, free0 - free1)
        self.start, self.end = _check(cudart.cudaEventCreate()), _check(cudart.cudaEventCreate())
        self.device_kind, self.pci_bus_id = "cuda", None
        self.artifact_bytes = Path(path).stat().st_size
        meta = Path(path).with_suffix(".json")
        extra = json.loads(meta.read_text()) if meta.is_file() else {}
        self.info = {"runtime": f"tensorrt {trt.__version__}", "gpu": gpu_name(), **extra}

    def _bind(self, trt: Any, batch: int) -> list[dict[str, Any]]:
        eng, ctx, io = self.engine, self.context, []
        tensor_api = hasattr(eng, "num_io_tensors")  # 8.5+ and 10.x; 8.0-8.4 have bindings only
        names = ([eng.get_tensor_name(i) for i in range(eng.num_io_tensors)] if tensor_api
                 else [eng.get_binding_name(i) for i in range(eng.num_bindings)])
        for i, name in enumerate(names):
            is_in = (eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT) if tensor_api else eng.binding_is_input(i)
            shape = tuple(eng.get_tensor_shape(name) if tensor_api else eng.get_binding_shape(i))
            if is_in and any(d < 0 for d in shape):
                shape = tuple(batch if d < 0 else d for d in shape)
                ctx.set_input_shape(name, shape) if tensor_api else ctx.set_binding_shape(i, shape)
            if not is_in:
                shape = tuple(ctx.get_tensor_shape(name) if tensor_api else ctx.get_binding_shape(i))
            dtype = trt.nptype(eng.get_tensor_dtype(name) if tensor_api else eng.get_binding_dtype(i))
            host = np.ascontiguousarray(np.random.default_rng(0).standard_normal(shape).astype(dtype)
                                        if is_in else np.empty(shape, dtype))
            ptr = _check(self.cudart.cudaMalloc(host.nbytes))
            if tensor_api:
                ctx.set_tensor_address(name, int(ptr))
            io.append({"name": name, "input": is_in, "host": host, "ptr": ptr})
        self._v3 = tensor_api
        return io

    def execute(self) -> None:
        cudart, s = self.cudart, self.stream
        for b in self.io:
            if b["input"]:
                _check(cudart.cudaMemcpyAsync(b["ptr"], b["host"].ctypes.data, b["host"].nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, s))
        if self._v3:
            self.context.execute_async_v3(int(s))
        else:
            self.context.execute_async_v2([int(b["ptr"]) for b in self.io], int(s))
        for b in self.io:
            if not b["input"]:
                _check(cudart.cudaMemcpyAsync(b["host"].ctypes.data, b["ptr"], b["host"].nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, s))

    def timed_run(self) -> float:
        cudart = self.cudart
        _check(cudart.cudaEventRecord(self.start, self.stream))
        self.execute()
        _check(cudart.cudaEventRecord(self.end, self.stream))
        _check(cudart.cudaEventSynchronize(self.end))
        return float(_check(cudart.cudaEventElapsedTime(self.start, self.end)))

    def device_memory_mb(self) -> float:
        return self.device_bytes / MB


class TensorRTBackend(Backend):
    """Builds (and caches) engines here and times them in a fresh process per model."""

    name = "tensorrt"
    loading = "models loaded (engines were built and cached before timing)"

    def unavailable_reason(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "tensorrt is not installed (pip install 'scbp-edge[tensorrt]')"
        try:
            cudart = _cudart()
        except ImportError:
            return "cuda-python is not installed (pip install 'scbp-edge[tensorrt]')"
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            return f"no CUDA GPU is visible (cudaGetDeviceCount: {err}, {count} devices)"
        return None

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp16", workspace_mb: int = 0) -> Path:
        import tensorrt as trt

        from scbp_edge.defaults import cache_dir

        data = source.read_bytes()
        key = engine_key(data, trt.__version__, gpu_name(), precision, workspace_mb)
        engine = cache_dir() / "engines" / f"{key}.engine"
        if not engine.is_file():
            blob, used = build_engine(data, source.name, precision, workspace_mb)
            engine.parent.mkdir(parents=True, exist_ok=True)
            part = engine.with_suffix(".part")
            part.write_bytes(blob)
            part.replace(engine)  # never a half-written engine under the cache name
            engine.with_suffix(".json").write_text(json.dumps({"precision": used, "built_from": source.name}))
        return engine

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        return TrtSession(str(artifact))

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        inp = next(b for b in handle.io if b["input"])
        inp["host"][...] = x.astype(inp["host"].dtype)
        handle.execute()
        _check(handle.cudart.cudaStreamSynchronize(handle.stream))
        return next(b for b in handle.io if not b["input"])["host"].copy()

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "scbp_edge.profile.gpu_worker", f"{__name__}:TrtSession"]

    def worker_config(self, target) -> dict[str, Any]:
        return {"power_interval_ms": target.measure.power_interval_ms, "idle_seconds": target.measure.idle_seconds}
