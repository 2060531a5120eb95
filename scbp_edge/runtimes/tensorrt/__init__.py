"""TensorRT on the local NVIDIA GPU (``pip install 'scbp-edge[tensorrt]'``).

Engines are built here from each candidate's ONNX with the shared recipe
(``runtimes/common/trt_engine.py``: precision flags of this TensorRT release,
workspace from the target) and cached under the shared key, because an engine
only runs on the GPU and TensorRT version that built it.  ``trt_session.py``
(ctypes over libcudart, no cuda-python) times them here and serves them in
images; ``serve.py`` is the served session.  Everything imports lazily.

NOT run on a GPU in this repository: see benchmarks/results/gpu_verify.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.errors import CompileError
from scbp_edge.runtimes.base import Capabilities, Runtime
from scbp_edge.runtimes.common import trt_engine

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024


def _recipe(precision: str, workspace_mb: int, max_batch: int = 1) -> dict[str, Any]:
    import tensorrt as trt

    return trt_engine.recipe(trt_engine.parse_version(trt.__version__), precision, workspace_mb, max_batch)


class TimingSession:
    """The gpu_worker's view of an engine: CUDA-event latency per inference, engine memory, NVML handle."""

    runtime_module = "tensorrt"
    device_kind = "cuda"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TimingSession:
        return cls(cfg["model"], int(cfg.get("batch", 1)))

    def __init__(self, path: str, batch: int = 1) -> None:
        import tensorrt as trt

        from scbp_edge.runtimes.tensorrt.trt_session import TrtSession

        meta_path = Path(path).with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.session = TrtSession(Path(path).read_bytes(), max(batch, int(meta.get("max_batch", 1))), trt)
        shape = [batch if d < 0 else d for d in self.session.input_shape]
        self.x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        self.pci_bus_id = self.session.cuda.pci_bus_id(0)
        self.artifact_bytes = Path(path).stat().st_size
        self.info = {"runtime": f"tensorrt {trt.__version__}", "gpu": trt_engine.device_name(),
                     "precision": meta.get("label", "unknown")}

    def timed_run(self) -> float:
        return self.session.timed_run(self.x)

    def device_memory_mb(self) -> float:
        return self.session.device_bytes() / MB


class TensorRT(Runtime):
    """Builds (and caches) engines here and times them in a fresh process per model."""

    name = "tensorrt"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), energy=("nvml",), locations=("local",),
                                batch_sizes=None, deployable=True, device_python=(3, 6))
    loading = "models loaded (engines were built and cached before timing)"
    default_base_image = "nvcr.io/nvidia/tensorrt:24.05-py3"
    serve_files = (HERE / "serve.py", HERE / "trt_session.py", HERE / "cudart.py",
                   HERE.parent / "common" / "trt_engine.py")

    def unavailable_reason(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "tensorrt is not installed (pip install 'scbp-edge[tensorrt]')"
        from scbp_edge.runtimes.tensorrt.cudart import CudaError, cuda

        try:
            if cuda().device_count() == 0:
                return "no CUDA GPU is visible"
        except CudaError as exc:
            return str(exc)
        return None

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp16", workspace_mb: int = 0,
                max_batch: int = 1) -> Path:
        import tensorrt as trt

        from scbp_edge.resources import cache_dir
        from scbp_edge.runtimes.tensorrt.trt_session import TrtError, build_engine

        rec = _recipe(precision, workspace_mb, max_batch)
        data = source.read_bytes()
        if precision == "fp16" and "fp16" not in rec["flags"]:  # strongly typed: the model itself must be fp16
            from scbp_edge.export.fp16 import to_fp16

            data, rec["label"] = to_fp16(data, source.name), "fp16 (fp16 ONNX, strongly typed)"
        key = trt_engine.cache_key(trt_engine.file_sha256(source), trt_engine.device_name(), rec)
        engine = cache_dir() / "engines" / f"{key}.engine"
        if not engine.is_file():
            try:
                blob = build_engine(trt, data, rec)
            except TrtError as exc:
                raise CompileError(f"{source.name}: {exc}") from None
            engine.parent.mkdir(parents=True, exist_ok=True)
            part = engine.with_suffix(".part")
            part.write_bytes(blob)
            part.replace(engine)  # never a half-written engine under the cache name
            engine.with_suffix(".json").write_text(json.dumps({**rec, "built_from": source.name}))
        return engine

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        import tensorrt as trt

        from scbp_edge.runtimes.tensorrt.trt_session import TrtSession

        return TrtSession(artifact.read_bytes(), 1, trt)

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        return handle.run(x)

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "scbp_edge.runtimes.common.gpu_worker", f"{__name__}:TimingSession"]

    def worker_config(self, target) -> dict[str, Any]:
        return {"power_interval_ms": target.measure.power_interval_ms, "idle_seconds": target.measure.idle_seconds}

    def session_class(self) -> Any:
        from scbp_edge.runtimes.tensorrt.serve import Session

        return Session
