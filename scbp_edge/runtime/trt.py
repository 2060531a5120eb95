"""TensorRT runtime for Jetson/GPU images: engine built on first start, cached by device.

NOT verified on hardware in this repository (no GPU or TensorRT was available
where it was written); the CPU runtime is the tested path.  The engine is built
with the device's own trtexec and cached under $SCBP_ENGINE_CACHE keyed by
(ONNX sha256, TensorRT version, GPU name, precision), since an engine only runs
where it was built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import numpy as np

from .model import Model

TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/bin/trtexec")


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (13 dropped cuda.cudart)
    except ImportError:
        from cuda import cudart
    return cudart


def _gpu_name() -> str:
    cudart = _cudart()
    err, props = cudart.cudaGetDeviceProperties(0)
    return props.name.decode(errors="replace").strip("\x00") if not err else "unknown-gpu"


def engine_path(onnx: str, precision: str, cache: str) -> str:
    import tensorrt as trt

    with open(onnx, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    key = f"{digest}-trt{trt.__version__}-{_gpu_name()}-{precision}".replace(" ", "_").replace("/", "_")
    return os.path.join(cache, key + ".engine")


def build_engine(onnx: str, engine: str, precision: str) -> None:
    trtexec = next((p for p in TRTEXEC_PATHS if os.path.exists(p)), shutil.which("trtexec"))
    if trtexec is None:
        raise RuntimeError("trtexec not found; use an NVIDIA TensorRT/L4T base image")
    import tensorrt as trt

    args = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}.tmp"]
    if precision == "fp16" and int(trt.__version__.split(".")[0]) < 11:  # 11 removed --fp16 (strong typing)
        args.append("--fp16")
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    os.replace(engine + ".tmp", engine)


class TensorRTModel(Model):
    """Same API as :class:`Model`, running a cached TensorRT engine.

    TensorRT 8.5+ uses the named-tensor API; older ones (JetPack 4.6's 8.2) the binding API.
    """

    def _open(self, path: str, threads: int) -> list[int]:
        import tensorrt as trt

        cudart = _cudart()
        precision = os.environ.get("SCBP_PRECISION", "fp16")
        cache = os.environ.get("SCBP_ENGINE_CACHE", "/cache")
        os.makedirs(cache, exist_ok=True)
        engine_file = engine_path(path, precision, cache)
        if not os.path.exists(engine_file):
            build_engine(path, engine_file, precision)
        logger = trt.Logger(trt.Logger.WARNING)
        with open(engine_file, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        self.context = self.engine.create_execution_context()
        self.cudart = cudart
        self.legacy = not hasattr(self.engine, "num_io_tensors")
        if self.legacy:  # TensorRT < 8.5: bindings 0 (input) and 1 (output)
            self.in_name, self.out_name = 0, 1
            return list(self.engine.get_binding_shape(0))
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.in_name = next(n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.out_name = next(n for n in self.names if n != self.in_name)
        return list(self.engine.get_tensor_shape(self.in_name))

    def _run(self, x: np.ndarray) -> np.ndarray:
        cu = self.cudart
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.legacy:
            out = np.empty(tuple(self.context.get_binding_shape(1)), dtype=np.float32)
        else:
            self.context.set_input_shape(self.in_name, x.shape)
            out = np.empty(tuple(self.context.get_tensor_shape(self.out_name)), dtype=np.float32)
        _, d_in = cu.cudaMalloc(x.nbytes)
        _, d_out = cu.cudaMalloc(out.nbytes)
        try:
            cu.cudaMemcpy(d_in, x.ctypes.data, x.nbytes, cu.cudaMemcpyKind.cudaMemcpyHostToDevice)
            if self.legacy:
                self.context.execute_v2([int(d_in), int(d_out)])
            else:
                self.context.set_tensor_address(self.in_name, d_in)
                self.context.set_tensor_address(self.out_name, d_out)
                _, stream = cu.cudaStreamCreate()
                self.context.execute_async_v3(stream)
                cu.cudaStreamSynchronize(stream)
                cu.cudaStreamDestroy(stream)
            cu.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        finally:
            cu.cudaFree(d_in)
            cu.cudaFree(d_out)
        return out
