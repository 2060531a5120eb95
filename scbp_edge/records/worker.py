"""The timing worker's answers as records: ready (model loaded), one round timed, stopped.

Workers are self-contained scripts that run on the device's own Python and
write one JSON object per line (runtimes/*/worker.py); a runtime turns a raw
answer into one of these (``Runtime.interpret``), so the profiler reads
fields and a worker that leaves one out or sends the wrong type is a
RecordError naming the field, not a KeyError deep inside a measurement.
Keys a record does not name (a runtime's own diagnostics) are kept in
``rest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scbp_edge.records.codec import spread


@dataclass(frozen=True)
class WorkerReady:
    """The worker loaded (or built) the model and is waiting for rounds."""

    load_s: float | None = None
    baseline_rss: int | None = None  # bytes resident before the model was loaded
    threads: int | None = None  # inference threads the runtime really uses
    artifact_bytes: int | None = None  # what the device loaded (an engine it built), else the artifact's size
    device_memory_mb: float | None = None
    energy_source: str | None = None
    energy_reason: str | None = None  # why energy is null, when it is
    idle_w: float | None = None  # idle power measured before the rounds
    info: dict[str, Any] = field(default_factory=dict)  # runtime version, power mode, clocks...
    rest: dict[str, Any] = spread()


@dataclass(frozen=True)
class WorkerRound:
    """One timed round: the latency of every inference in it and what the sensors read over it."""

    latencies_ms: tuple[float, ...]
    wall_s: float = 0.0
    cpu_s: float | None = None  # this process's CPU time over the round (one-thread waiting estimate)
    energy_uj: float | None = None  # None: the sensor could not be read this round
    idle_w: float | None = None
    energy_source: str | None = None  # a worker may learn its sensor while timing
    energy_reason: str | None = None
    rest: dict[str, Any] = spread()


@dataclass(frozen=True)
class WorkerStop:
    """The worker's last answer, after its rounds."""

    peak_rss: int | None = None  # bytes, the process's high-water mark
    baseline_rss: int | None = None
    device_memory_mb: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    rest: dict[str, Any] = spread()


#: the record of each kind of answer
ANSWERS: dict[str, type] = {"ready": WorkerReady, "round": WorkerRound, "stop": WorkerStop}
