"""TensorRT through the device's own ``trtexec`` (Jetson over SSH, or any machine with TensorRT).

Engines are specific to the GPU and TensorRT version they were built on, so
the worker (``worker.py``, standard library only, shipped with the shared
recipe ``common/trt_engine.py``) builds and times them on the device.  This
module turns the worker's raw output into the worker protocol with the parsers
(``parsers.py``) that are tested on real device logs.  Models it measured are
served in images by the ``tensorrt`` runtime's serving code, built from the same recipe.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scbp_edge.errors import CompileError, ProfileError
from scbp_edge.records.codec import decode, spread
from scbp_edge.records.worker import WorkerReady, WorkerRound, WorkerStop
from scbp_edge.runtimes.base import Capabilities, Runtime
from scbp_edge.runtimes.trtexec import parsers

if TYPE_CHECKING:
    from scbp_edge.targets import Target

HERE = Path(__file__).resolve().parent


class Trtexec(Runtime):
    """Build with ``trtexec --saveEngine``, time with ``--loadEngine --exportTimes``, power from tegrastats."""

    name = "trtexec"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), energy=("tegrastats",),
                                locations=("local", "ssh"), batch_sizes=(1,), deployable=True, device_python=(3, 6))
    remote_files = (HERE / "worker.py", HERE.parent / "common" / "trt_engine.py")
    remote_imports = ()
    loading = "models loaded (TensorRT engines are built on the device now)"
    serves_with = "tensorrt"  # the image runs the engine with TensorRT's Python API, built from the same recipe

    def unavailable_reason(self) -> str | None:
        if not (shutil.which("trtexec") or Path("/usr/src/tensorrt/bin/trtexec").is_file()):
            return ("trtexec is not on this machine (TensorRT is not installed); time on the device with "
                    "--device ssh://user@jetson")
        return None

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp16", workspace_mb: int = 0,
                max_batch: int = 1) -> Path:
        # The engine is built on the device by the worker; here only check that trtexec can take the file.
        import onnx

        model = onnx.load(str(source), load_external_data=False)
        for inp in model.graph.input:
            dims = inp.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") for d in dims):
                raise CompileError(f"{source.name}: input '{inp.name}' has a dynamic dimension; the trtexec backend "
                                   "times static shapes - build without --dynamic-batch")
        return source

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        raise CompileError("trtexec engines are only run by trtexec on the device; serve with the TensorRT runtime")

    def run(self, handle: Any, x: np.ndarray) -> np.ndarray:
        raise CompileError("trtexec engines are only run by trtexec on the device")

    def worker_argv(self) -> list[str]:
        return [sys.executable, str(HERE / "worker.py")]

    def worker_config(self, target: Target) -> dict[str, Any]:
        return {"workspace_mb": target.workspace_mb,
                "power_interval_ms": target.measure.power_interval_ms, "idle_seconds": target.measure.idle_seconds,
                "build_timeout_s": target.measure.timeout_s, "round_timeout_s": target.measure.timeout_s}

    def interpret(self, kind: str, msg: dict[str, Any]) -> Any:
        """The trtexec worker's raw answer (logs, tegrastats text, sysfs clocks) as the protocol's record."""
        raw = {"ready": _RawReady, "round": _RawRound, "stop": _RawStop}[kind]
        return {"ready": _ready, "round": _round, "stop": _stop}[kind](decode(raw, msg, f"trtexec worker {kind}"))


@dataclass(frozen=True)
class _Clocks:
    """The GPU's devfreq node on a Jetson (Hz); pinned by jetson_clocks when min == max."""

    min_freq: int | None = None
    max_freq: int | None = None
    cur_freq: int | None = None
    rest: dict[str, Any] = spread()


@dataclass(frozen=True)
class _RawReady:
    load_s: float | None = None
    artifact_bytes: int | None = None
    build_log: str | None = None
    power_interval_ms: int | None = None
    power_tool: str | None = None
    nvpmodel: str | None = None
    clocks: _Clocks | None = None
    info: dict[str, Any] = field(default_factory=dict)
    rest: dict[str, Any] = spread()


@dataclass(frozen=True)
class _RawRound:
    latencies_ms: tuple[float, ...] = ()
    log: str | None = None
    power: str | None = None  # tegrastats' own text over the idle pause and the timed run
    idle_s: float | None = None
    wall_s: float = 0.0
    power_interval_ms: int | None = None
    rest: dict[str, Any] = spread()


@dataclass(frozen=True)
class _RawStop:
    log: str | None = None
    rest: dict[str, Any] = spread()


def _ready(msg: _RawReady) -> WorkerReady:
    info = dict(msg.info)
    info["power_mode"] = parsers.parse_nvpmodel(msg.nvpmodel or "")
    clocks = msg.clocks
    if clocks and clocks.min_freq is not None and clocks.max_freq is not None:
        info["clocks_pinned"] = clocks.min_freq == clocks.max_freq
        info["gpu_clock_mhz"] = (clocks.cur_freq or 0) / 1e6
    else:
        info["clocks_pinned"] = None  # unknown: no GPU devfreq node (not a Jetson)
    if msg.build_log:
        info["tensorrt"] = parsers.parse_trtexec(msg.build_log).tensorrt_version or info.get("tensorrt")
    reason = None if msg.power_tool else "tegrastats not found on the device (not a Jetson, or pass ?bin=DIR)"
    return WorkerReady(load_s=msg.load_s, artifact_bytes=msg.artifact_bytes, energy_reason=reason, info=info)


def _round(msg: _RawRound) -> WorkerRound:
    res = parsers.parse_trtexec(msg.log or "")
    if not res.complete:
        raise ProfileError(f"trtexec output incomplete (missing: {', '.join(res.missing)})")
    if not msg.latencies_ms:
        raise ProfileError("trtexec wrote no per-iteration times (--exportTimes)")
    wall = res.total_host_walltime_s or msg.wall_s
    if msg.power is None:
        return WorkerRound(msg.latencies_ms, wall)
    interval = float(msg.power_interval_ms or 100)
    idle, timed = parsers.split_power_window(parsers.parse_tegrastats(msg.power), interval, float(msg.idle_s or 0),
                                             wall)
    if not timed:
        return WorkerRound(msg.latencies_ms, wall,
                           energy_reason="tegrastats printed no power rails (on some JetPack releases it needs sudo)")
    mean_mw = sum(s.total_mw or 0 for s in timed) / len(timed)
    return WorkerRound(
        msg.latencies_ms, wall, energy_uj=mean_mw * wall * 1000.0,  # mW x s = mJ
        energy_source=f"tegrastats {timed[0].total_rail}, {interval:.0f} ms sampling over each timed window",
        idle_w=sum(s.total_mw or 0 for s in idle) / len(idle) / 1000.0 if idle else None)


def _stop(msg: _RawStop) -> WorkerStop:
    return WorkerStop(device_memory_mb=parsers.trt_device_memory_mb(msg.log or ""))
