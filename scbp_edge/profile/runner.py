"""Interleaved profiling: one fresh worker process per model, rounds A B C A B C ...

Each model gets its own process (so one cannot pollute another's memory or
caches' steady state) and all models of a chunk are measured round-robin, so
that machine drift during the chunk hits all of them alike.
"""

from __future__ import annotations

import contextlib
import json
import select
import statistics
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scbp_edge.errors import ProfileError, RecordError
from scbp_edge.records import BUSY_SHARE, MIN_QUIET_ROUNDS, Energy, LatencyStats, Measurement, Paired
from scbp_edge.records.worker import WorkerReady, WorkerRound, WorkerStop
from scbp_edge.runtimes.base import Runtime
from scbp_edge.targets import Target

MB = 1024 * 1024
SLOW_ROUND = 0.10  # a round whose median is this much above the worker's fastest clean round was disturbed
MAX_EXTRA = 2  # rounds measured again for disturbed ones: at most this many times the target's rounds


@dataclass(frozen=True)
class Item:
    """One model to measure: its key (a candidate id), its compiled artifact and the precision it was built for."""

    key: str
    artifact: Path
    precision: str = "fp32"


@dataclass
class _Worker:
    key: str
    artifact: Path
    proc: subprocess.Popen
    ready: WorkerReady = field(default_factory=WorkerReady)
    rounds: list[list[float]] = field(default_factory=list)
    energy_uj: float = 0.0
    energy_ok: bool = True
    timed_s: float = 0.0
    idle_uj: float = 0.0  # idle power x timed window, when the worker measures idle power every round
    idle_rounds: int = 0
    #: per round, the share of its timed wall clock a one-thread worker spent waiting for a core (else None)
    waited: list[float | None] = field(default_factory=list)
    inferences: int = 0  # over every round timed, also those later set aside as busy (energy covers them all)
    kept: list[int] = field(default_factory=list)  # indices of the rounds the figures come from
    measured: int = 0  # rounds timed in all
    slowest: float | None = None  # slowest set-aside round's median / the fastest round's
    disturbed: bool = False  # too few clean rounds to set the disturbed ones aside: the figures are noisy
    error: str | None = None
    stderr: deque = field(default_factory=lambda: deque(maxlen=200))  # last lines, drained while it runs
    pump: threading.Thread | None = None

    def drain_stderr(self) -> None:
        """Read the worker's stderr on a thread: a chatty runtime must never fill the pipe and stall."""
        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)

        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()

    def stderr_tail(self, limit: int = 300) -> str:
        return "".join(self.stderr)[-limit:].strip()


def _send(w: _Worker, obj: dict[str, Any]) -> None:
    assert w.proc.stdin is not None
    w.proc.stdin.write(json.dumps(obj) + "\n")
    w.proc.stdin.flush()


def _recv(w: _Worker, timeout: float, backend: Runtime, kind: str) -> Any:
    """The worker's next answer of ``kind`` as its record (records/worker.py), or ProfileError."""
    assert w.proc.stdout is not None
    ready, _, _ = select.select([w.proc.stdout], [], [], timeout)
    if not ready:
        raise ProfileError(f"worker for {w.key} gave no answer within {timeout:.0f}s (raise measure.timeout_s)")
    line = w.proc.stdout.readline()
    if not line:
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=5)
        if w.pump is not None:
            w.pump.join(timeout=2)  # let the stderr pump catch the last words
        raise ProfileError(f"worker for {w.key} exited (code {w.proc.poll()}): {w.stderr_tail() or 'no message'}")
    msg = json.loads(line)
    if isinstance(msg, dict) and "error" in msg:
        raise ProfileError(f"worker for {w.key} failed: {msg['error']}")
    try:
        return backend.interpret(kind, msg)
    except ProfileError as exc:
        raise ProfileError(f"{w.key}: {exc}") from None
    except RecordError as exc:  # a worker of another version, or a damaged line: this candidate fails alone
        raise ProfileError(f"worker for {w.key} sent a '{kind}' answer that does not fit: {exc}") from None


def _start(item: Item, target: Target, argv: list[str], batch: int, model_path: str,
           backend: Runtime, extra: dict[str, Any]) -> _Worker:
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    w = _Worker(item.key, item.artifact, proc)
    w.drain_stderr()
    # threads 0: the runtime's default on the machine that runs the worker (all its cores), never this host's count
    cfg = {"model": model_path, "threads": target.threads, "warmup": target.measure.warmup,
           "warmup_s": target.measure.warmup_seconds, "batch": batch,
           "precision": item.precision, **backend.worker_config(target), **extra}
    _send(w, cfg)
    return w


def _energy(w: _Worker, target: Target, inferences: int) -> Energy:
    """Energy per inference from the worker's counter, or null with the reason."""
    if target.energy == "none":
        return Energy(None, "none", f"target '{target.name}' names no power sensor (energy = \"none\")")
    source, reason = w.ready.energy_source, w.ready.energy_reason
    if reason or not source:
        return Energy(None, source or target.energy, reason or f"the worker does not read '{target.energy}'")
    if not w.energy_ok:
        return Energy(None, source, "the energy sensor could not be read in every timed round")
    idle_w = w.ready.idle_w
    if w.rounds and w.idle_rounds == len(w.rounds) and w.timed_s > 0:
        idle_w = w.idle_uj / 1e6 / w.timed_s
    total_mj = w.energy_uj / 1000.0
    above = (total_mj - idle_w * 1000.0 * w.timed_s) / inferences if idle_w is not None else None
    if above is not None and above < 0:  # below the sensor's noise: an H200 at ~118 W idle gave -14..+60 mJ
        above = None
    return Energy(total_mj / inferences, source, None, above, idle_w)


def _finish(w: _Worker, target: Target, backend: Runtime, batch: int) -> Measurement:
    stop = WorkerStop()
    try:
        _send(w, {"cmd": "stop"})
        stop = _recv(w, target.measure.timeout_s, backend, "stop")
    finally:
        w.proc.wait(timeout=30)
    peak, baseline = stop.peak_rss, w.ready.baseline_rss
    kept = [w.rounds[i] for i in (w.kept or range(len(w.rounds)))]
    lat = LatencyStats.from_samples([x for r in kept for x in r], batch, kept)
    known = [w.waited[i] for i in (w.kept or range(len(w.waited))) if i < len(w.waited) and w.waited[i] is not None]
    if known:
        lat.waited = max(known)
    lat.noisy = w.disturbed
    lat.rounds_measured = w.measured or len(w.rounds)
    lat.rounds_set_aside = lat.rounds_measured - len(kept)
    lat.slowest_round = w.slowest
    dev_mem = stop.device_memory_mb if stop.device_memory_mb is not None else w.ready.device_memory_mb
    size = w.ready.artifact_bytes if w.ready.artifact_bytes is not None else w.artifact.stat().st_size
    return Measurement(
        target=target.name, backend=backend.name, threads=int(w.ready.threads or target.threads), latency=lat,
        peak_rss_mb=peak / MB if peak else None, baseline_rss_mb=baseline / MB if baseline else None,
        memory_mb=(peak - baseline) / MB if peak and baseline else None,
        model_size_mb=size / MB,
        energy=_energy(w, target, (w.inferences or lat.runs) * batch), load_s=w.ready.load_s,
        device_memory_mb=dev_mem, info={**w.ready.info, **stop.info},
    )


def profile_interleaved(
    items: Sequence[Item],
    target: Target,
    *,
    backend: Runtime,
    worker_argv: list[str],
    on_result: Callable[[str, Measurement | None, str | None], None],
    chunk: int = 8,
    batch: int = 1,
    on_round: Callable[[], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    stage: Callable[[Sequence[Item]], dict[str, str]] | None = None,
    device: str = "local",
    extra_config: dict[str, Any] | None = None,
    reference: Item | None = None,
) -> None:
    """Profile ``items`` in chunks of ``chunk`` live workers; report each via ``on_result``.

    ``on_result(key, measurement, error)`` is called as soon as a model is
    done (measurement) or has failed (error); one failure never stops the rest.
    ``on_ready`` is called as each model is loaded (or failed to load), for progress.
    ``stage`` puts a chunk's artifacts where the workers read them (e.g. on a
    remote device) and returns their paths there; ``extra_config`` goes into
    every worker's configuration (device-specific settings).

    ``reference`` (the seed) is measured in every chunk too, so each
    candidate's speed-up is paired round by round with it (``Measurement.paired``).
    A round is disturbed when the one-thread worker waited for a core beyond
    BUSY_SHARE of it, or its median lies SLOW_ROUND above the worker's fastest
    clean round (:func:`_clean`).  The chunk gets more rounds until every worker
    has ``target.measure.rounds`` clean ones (at most MAX_EXTRA times as many
    again); each worker's disturbed rounds are then set aside, and only a worker
    left with fewer than MIN_QUIET_ROUNDS clean rounds is flagged ``noisy``.
    """
    for start in range(0, len(items), chunk):
        part = list(items[start : start + chunk])
        extra_ref = reference is not None and all(it.key != reference.key for it in part)
        run = part + ([Item(REF_KEY, reference.artifact, reference.precision)] if extra_ref else [])
        try:
            staged = stage(run) if stage else {it.key: str(it.artifact) for it in run}
        except (ProfileError, OSError) as exc:
            for it in part:
                on_result(it.key, None, f"cannot stage the model: {exc}")
            continue
        workers: list[_Worker] = []
        for it in run:
            try:
                workers.append(_start(it, target, worker_argv, batch, staged[it.key], backend, extra_config or {}))
            except OSError as exc:
                if it.key != REF_KEY:
                    on_result(it.key, None, f"cannot start worker: {exc}")
        live = _ready(workers, target, backend, _quiet_ref(on_result), on_ready)
        _rounds(live, target, backend, _quiet_ref(on_result), on_round)
        extra = 0  # disturbed rounds are measured again, within a bound: at most MAX_EXTRA times the rounds again
        while extra < MAX_EXTRA * target.measure.rounds and any(
                sum(_clean(w)) < target.measure.rounds for w in live):
            _rounds(live, target, backend, _quiet_ref(on_result), None, count=1)
            extra += 1
        for w in live:
            _set_aside_disturbed(w, min(MIN_QUIET_ROUNDS, target.measure.rounds))
        ref = next((w for w in live if reference is not None and w.key in (REF_KEY, reference.key)), None)
        for w in live:
            try:
                m = _finish(w, target, backend, batch)
            except (ProfileError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                _kill(w)
                if w.key != REF_KEY:
                    on_result(w.key, None, str(exc))
                continue
            if w.key == REF_KEY:
                continue
            m.device = device
            if ref is not None and reference is not None:
                m.paired = paired(w, ref, reference.key)
            on_result(w.key, m, None)


REF_KEY = "__reference__"


def _quiet_ref(on_result: Callable[[str, Measurement | None, str | None], None]):
    """The extra reference worker of a chunk reports nothing of its own."""
    return lambda key, m, err: None if key == REF_KEY else on_result(key, m, err)


def _clean(w: _Worker) -> list[bool]:
    """Per round: undisturbed, i.e. no waiting for a core and a median within SLOW_ROUND of the fastest round.

    On a shared (virtual) machine a one-thread inference sometimes runs 1.5-1.8x
    slower for a whole round while it has the core to itself: a neighbour on
    the same physical core.  Such rounds only ever slow a model down, so the
    fastest undisturbed round is the reference for what the model costs.
    """
    meds = [statistics.median(r) if r else float("inf") for r in w.rounds]
    quiet = [_quiet(w, i) for i in range(len(meds))]
    fastest = min((m for m, q in zip(meds, quiet) if q), default=min(meds, default=0.0))
    return [q and m <= fastest * (1 + SLOW_ROUND) for m, q in zip(meds, quiet)]


def _quiet(w: _Worker, i: int) -> bool:
    """Round ``i`` of ``w`` ran without waiting for a core (or that cannot be told)."""
    x = w.waited[i] if i < len(w.waited) else None
    return x is None or x <= BUSY_SHARE


def _set_aside_disturbed(w: _Worker, need: int = MIN_QUIET_ROUNDS) -> None:
    """Keep a worker's clean rounds where ``need`` of them exist; else keep all, to be flagged noisy.

    Each worker keeps its own clean rounds (``w.kept``, indices into its rounds),
    so pairing with the reference uses the rounds both kept.
    """
    clean = _clean(w)
    w.measured = len(w.rounds)
    w.slowest = None
    gone = [i for i, c in enumerate(clean) if not c]
    if gone and sum(clean) >= need:
        meds = [statistics.median(r) for r in w.rounds if r]
        w.slowest = max(statistics.median(w.rounds[i]) for i in gone if w.rounds[i]) / min(meds)
        w.kept = [i for i, c in enumerate(clean) if c]
    else:
        w.kept = list(range(len(w.rounds)))
        w.disturbed = bool(gone)


def paired(w: _Worker, ref: _Worker, reference: str) -> Paired | None:
    """Speed-up over the reference: round i against round i where both kept it, else against its kept median."""
    mine = {i: statistics.median(w.rounds[i]) for i in w.kept if w.rounds[i]}
    theirs = {i: statistics.median(ref.rounds[i]) for i in ref.kept if ref.rounds[i]}
    both = sorted(set(mine) & set(theirs))
    if len(both) >= MIN_QUIET_ROUNDS:
        ratios = [theirs[i] / mine[i] for i in both if mine[i] > 0]
    elif theirs:
        base = statistics.median(theirs.values())
        ratios = [base / m for m in mine.values() if m > 0]
    else:
        ratios = []
    if not ratios:
        return None
    return Paired(reference, statistics.median(ratios), [min(ratios), max(ratios)], ratios)


def _rounds(live: list[_Worker], target: Target, backend: Runtime, on_result, on_round,
            count: int | None = None) -> None:
    """``count`` (default ``target.measure.rounds``) interleaved rounds over the live workers (a failing one
    leaves ``live``)."""
    for _ in range(target.measure.rounds if count is None else count):
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
            _count(w, msg)
        if on_round:
            on_round()


def _count(w: _Worker, r: WorkerRound) -> None:
    """Add one round's latencies, energy and idle power to the worker's counters."""
    w.rounds.append(list(r.latencies_ms))
    w.inferences += len(r.latencies_ms)
    w.waited.append(_waited(w, r))
    if r.energy_uj is None:
        w.energy_ok = False
    else:
        w.energy_uj += r.energy_uj
    w.timed_s += r.wall_s
    if r.idle_w is not None:
        w.idle_uj += r.idle_w * r.wall_s * 1e6
        w.idle_rounds += 1
    if r.energy_source or r.energy_reason:  # a worker may learn its sensor while timing
        w.ready = replace(w.ready, energy_source=r.energy_source or w.ready.energy_source,
                          energy_reason=r.energy_reason or w.ready.energy_reason)


def _waited(w: _Worker, r: WorkerRound) -> float | None:
    """Share of a round's wall clock a one-thread worker was not running; None where that cannot be told."""
    cpu, wall = r.cpu_s, r.wall_s
    if int(w.ready.threads or 0) != 1 or cpu is None or not wall:
        return None  # several inference threads: their CPU time says nothing about waiting
    return max(0.0, 1.0 - float(cpu) / float(wall))


def _ready(workers: list[_Worker], target: Target, backend: Runtime, on_result, on_ready) -> list[_Worker]:
    live = []
    for w in workers:  # loading can be long: a Jetson builds each TensorRT engine here
        try:
            w.ready = _recv(w, target.measure.timeout_s, backend, "ready")
            live.append(w)
        except (ProfileError, OSError, ValueError) as exc:
            _kill(w)
            on_result(w.key, None, str(exc))
        if on_ready and w.key != REF_KEY:  # the chunk's extra reference worker is not one of the models counted
            on_ready()
    return live


def _kill(w: _Worker) -> None:
    if w.proc.poll() is None:
        w.proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        w.proc.wait(timeout=10)

