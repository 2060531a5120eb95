"""Interleaved profiling: one fresh worker process per model, rounds A B C A B C ...

Each model gets its own process (so one cannot pollute another's memory or
caches' steady state) and all models of a chunk are measured round-robin, so
that machine drift during the chunk hits all of them alike.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scbp_edge.backends.base import Backend
from scbp_edge.errors import ProfileError
from scbp_edge.records import Energy, LatencyStats, Measurement
from scbp_edge.targets import Target

MB = 1024 * 1024


@dataclass
class _Worker:
    key: str
    artifact: Path
    proc: subprocess.Popen
    ready: dict[str, Any] = field(default_factory=dict)
    rounds: list[list[float]] = field(default_factory=list)
    energy_uj: float = 0.0
    energy_ok: bool = True
    timed_s: float = 0.0
    idle_uj: float = 0.0  # idle power x timed window, when the worker measures idle power every round
    idle_rounds: int = 0
    error: str | None = None


def _send(w: _Worker, obj: dict[str, Any]) -> None:
    assert w.proc.stdin is not None
    w.proc.stdin.write(json.dumps(obj) + "\n")
    w.proc.stdin.flush()


def _recv(w: _Worker, timeout: float, backend: Backend | None = None, kind: str = "") -> dict[str, Any]:
    assert w.proc.stdout is not None
    ready, _, _ = select.select([w.proc.stdout], [], [], timeout)
    if not ready:
        raise ProfileError(f"worker for {w.key} gave no answer within {timeout:.0f}s (raise measure.timeout_s)")
    line = w.proc.stdout.readline()
    if not line:
        err = (w.proc.stderr.read() if w.proc.stderr else "")[-300:].strip()
        raise ProfileError(f"worker for {w.key} exited (code {w.proc.poll()}): {err or 'no message'}")
    msg = json.loads(line)
    if "error" in msg:
        raise ProfileError(f"worker for {w.key} failed: {msg['error']}")
    if backend is None:
        return msg
    try:
        return backend.interpret(kind, msg)
    except ProfileError as exc:
        raise ProfileError(f"{w.key}: {exc}") from None


def _threads(target: Target) -> int:
    import os

    return target.threads or (os.cpu_count() or 1)


def _start(key: str, artifact: Path, target: Target, argv: list[str], batch: int, model_path: str,
           backend: Backend, extra: dict[str, Any]) -> _Worker:
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    w = _Worker(key, artifact, proc)
    cfg = {"model": model_path, "threads": _threads(target), "warmup": target.measure.warmup, "batch": batch,
           **backend.worker_config(target), **extra}
    _send(w, cfg)
    return w


def _energy(w: _Worker, target: Target, inferences: int) -> Energy:
    """Energy per inference from the worker's counter, or null with the reason."""
    if target.energy == "none":
        return Energy(None, "none", f"target '{target.name}' names no power sensor (energy = \"none\")")
    source, reason = w.ready.get("energy_source"), w.ready.get("energy_reason")
    if reason or not source:
        return Energy(None, source or target.energy, reason or f"the worker does not read '{target.energy}'")
    if not w.energy_ok:
        return Energy(None, source, "the energy sensor could not be read in every timed round")
    idle_w = w.ready.get("idle_w")
    if w.rounds and w.idle_rounds == len(w.rounds) and w.timed_s > 0:
        idle_w = w.idle_uj / 1e6 / w.timed_s
    total_mj = w.energy_uj / 1000.0
    above = (total_mj - idle_w * 1000.0 * w.timed_s) / inferences if idle_w is not None else None
    return Energy(total_mj / inferences, source, None, above, idle_w)


def _finish(w: _Worker, target: Target, backend: Backend, batch: int) -> Measurement:
    stop: dict[str, Any] = {}
    try:
        _send(w, {"cmd": "stop"})
        stop = _recv(w, target.measure.timeout_s, backend, "stop")
    finally:
        w.proc.wait(timeout=30)
    peak, baseline = stop.get("peak_rss"), w.ready.get("baseline_rss")
    samples = [x for r in w.rounds for x in r]
    lat = LatencyStats.from_samples(samples, batch, w.rounds)
    dev_mem = stop.get("device_memory_mb", w.ready.get("device_memory_mb"))
    return Measurement(
        target=target.name, backend=backend.name, threads=_threads(target), latency=lat,
        peak_rss_mb=peak / MB if peak else None, baseline_rss_mb=baseline / MB if baseline else None,
        memory_mb=(peak - baseline) / MB if peak and baseline else None,
        model_size_mb=w.ready.get("artifact_bytes", w.artifact.stat().st_size) / MB,
        energy=_energy(w, target, len(samples) * batch), load_s=w.ready.get("load_s"),
        device_memory_mb=dev_mem, info={**w.ready.get("info", {}), **stop.get("info", {})},
    )


def profile_interleaved(
    items: Sequence[tuple[str, Path]],
    target: Target,
    *,
    backend: Backend,
    worker_argv: list[str],
    on_result: Callable[[str, Measurement | None, str | None], None],
    chunk: int = 8,
    batch: int = 1,
    on_round: Callable[[], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    stage: Callable[[Sequence[tuple[str, Path]]], dict[str, str]] | None = None,
    device: str = "local",
    extra_config: dict[str, Any] | None = None,
) -> None:
    """Profile ``items`` (key, artifact) in chunks of ``chunk`` live workers; report each via ``on_result``.

    ``on_result(key, measurement, error)`` is called as soon as a model is
    done (measurement) or has failed (error); one failure never stops the rest.
    ``on_ready`` is called as each model is loaded (or failed to load), for progress.
    ``stage`` puts a chunk's artifacts where the workers read them (e.g. on a
    remote device) and returns their paths there; ``extra_config`` goes into
    every worker's configuration (device-specific settings).
    """
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        try:
            where = stage(part) if stage else {k: str(a) for k, a in part}
        except (ProfileError, OSError) as exc:
            for key, _ in part:
                on_result(key, None, f"cannot stage the model: {exc}")
            continue
        workers: list[_Worker] = []
        for key, art in part:
            try:
                workers.append(_start(key, art, target, worker_argv, batch, where[key], backend,
                                      extra_config or {}))
            except OSError as exc:
                on_result(key, None, f"cannot start worker: {exc}")
        live = _ready(workers, target, backend, on_result, on_ready)
        for _ in range(target.measure.rounds):
            for w in list(live):
                try:
                    _send(w, {"cmd": "round", "min_runs": target.measure.min_runs,
                              "min_seconds": target.measure.min_seconds})
                    msg = _recv(w, target.measure.timeout_s, backend, "round")
                except (ProfileError, OSError, ValueError) as exc:
                    _kill(w)
                    live.remove(w)
                    on_result(w.key, None, str(exc))
                    continue
                w.rounds.append(msg["latencies_ms"])
                if msg.get("energy_uj") is None:
                    w.energy_ok = False
                else:
                    w.energy_uj += msg["energy_uj"]
                w.timed_s += msg.get("wall_s", 0.0)
                if msg.get("idle_w") is not None:
                    w.idle_uj += msg["idle_w"] * msg.get("wall_s", 0.0) * 1e6
                    w.idle_rounds += 1
                for k in ("energy_source", "energy_reason"):  # a worker may learn its sensor while timing
                    if msg.get(k):
                        w.ready[k] = msg[k]
            if on_round:
                on_round()
        for w in live:
            try:
                m = _finish(w, target, backend, batch)
                m.device = device
                on_result(w.key, m, None)
            except (ProfileError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                _kill(w)
                on_result(w.key, None, str(exc))


def _ready(workers: list[_Worker], target: Target, backend: Backend, on_result, on_ready) -> list[_Worker]:
    live = []
    for w in workers:  # loading can be long: a Jetson builds each TensorRT engine here
        try:
            w.ready = _recv(w, target.measure.timeout_s, backend, "ready")
            live.append(w)
        except (ProfileError, OSError, ValueError) as exc:
            _kill(w)
            on_result(w.key, None, str(exc))
        if on_ready:
            on_ready()
    return live


def _kill(w: _Worker) -> None:
    if w.proc.poll() is None:
        w.proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        w.proc.wait(timeout=10)


def profile_one(path: Path, target: Target, devices: Sequence[str] = ()) -> Measurement:
    """Profile a single model file (``scbp-edge profile``), here or on the first usable SSH device."""
    import re

    from scbp_edge.backends import backend_for
    from scbp_edge.errors import TargetError

    backend = backend_for(target, remote=bool(devices))
    want = ".onnx" if backend.source == "onnx" else ".pt"
    if path.suffix != want:
        raise TargetError(f"backend '{backend.name}' times {want} files, not '{path.name}'")
    art = backend.compile(path, path.parent, precision=target.precision, workspace_mb=target.workspace_mb)
    got: dict[str, Any] = {}
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)  # it names a file on the device
    if devices:
        from scbp_edge.remote.pool import profile_on_devices

        profile_on_devices([(key, art)], target, backend=backend, urls=devices, chunk=1,
                           on_result=lambda k, m, e: got.update(m=m, e=e))
    else:
        profile_interleaved([(key, art)], target, backend=backend, worker_argv=backend.worker_argv(),
                            on_result=lambda k, m, e: got.update(m=m, e=e))
    if got.get("m") is None:
        raise ProfileError(got.get("e") or "profiling produced no result")
    return got["m"]


