"""Measurement records: latency statistics, energy, the paired speed-up (no backend imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: a one-thread worker that waited for a core this share of a round's wall clock ran on a busy machine; such a
#: round is set aside (benchmarks/results/noisy_rounds.md)
BUSY_SHARE = 0.05
MIN_QUIET_ROUNDS = 3


@dataclass
class Paired:
    """Speed-up of a candidate over the reference (the seed), round by round within the same interleaved rounds.

    Machine drift hits both alike within a round, so the ratio survives a busy
    moment that pooled p50s do not.
    """

    reference: str
    speedup: float  # median over rounds of reference p50 / candidate p50
    interval: list[float]  # [min, max] of the per-round ratios
    rounds: list[float]


@dataclass
class LatencyStats:
    """Latency distribution of one model on one target, in milliseconds."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    throughput_ips: float
    batch: int = 1
    round_p50_ms: list[float] = field(default_factory=list)
    #: where the p50 lies: the range of the round medians (a 94 % interval for the median with 5 rounds)
    p50_interval_ms: list[float] | None = None
    #: spread of the round medians (std / mean): how much the rounds disagreed
    round_cv: float | None = None
    #: too few undisturbed rounds even after measuring again (profile/runner.py): treat the figures with care
    noisy: bool = False
    #: the largest share of a kept round's wall clock the (single) inference thread spent waiting for a core
    waited: float | None = None
    #: rounds timed in all, and those set aside as disturbed (waited for a core, or ran slow: profile/runner.py)
    rounds_measured: int | None = None
    rounds_set_aside: int = 0
    slowest_round: float | None = None  # the slowest set-aside round's median over the fastest round's

    @classmethod
    def from_samples(
        cls, samples_ms: list[float], batch: int = 1, rounds: list[list[float]] | None = None
    ) -> LatencyStats:
        """Statistics over all timed runs; ``rounds`` keeps each round's median for spread checks."""
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        meds = [float(np.median(r)) for r in (rounds or []) if r]
        spread = float(np.std(meds) / np.mean(meds)) if len(meds) > 1 and np.mean(meds) > 0 else None
        return cls(
            runs=int(a.size),
            p50_ms=float(np.percentile(a, 50)),
            p90_ms=float(np.percentile(a, 90)),
            p99_ms=float(np.percentile(a, 99)),
            mean_ms=mean,
            std_ms=std,
            cv=std / mean if mean > 0 else 0.0,
            throughput_ips=1000.0 * batch / mean if mean > 0 else 0.0,
            batch=batch,
            round_p50_ms=meds,
            p50_interval_ms=[min(meds), max(meds)] if len(meds) >= 3 else None,
            round_cv=spread,
        )


@dataclass
class Energy:
    """Energy per inference, or null with the reason (never an invented number)."""

    mj_per_inference: float | None
    source: str
    reason: str | None = None
    above_idle_mj: float | None = None
    idle_w: float | None = None


@dataclass
class Batched:
    """A candidate timed at a batch size above 1 (a target's ``batch_sizes``): latency per batch, images per second.

    ``speedup``: against the seed at the same batch size, paired within the same rounds.
    """

    latency: LatencyStats
    speedup: float | None = None


@dataclass
class Measurement:
    """Everything measured for one candidate on one target."""

    target: str
    backend: str
    threads: int
    latency: LatencyStats
    peak_rss_mb: float | None
    baseline_rss_mb: float | None
    memory_mb: float | None  # peak RSS above the interpreter+runtime baseline
    model_size_mb: float
    energy: Energy
    load_s: float | None = None
    device: str = "local"
    device_memory_mb: float | None = None  # GPU: TensorRT-managed or torch-allocated peak, MiB
    info: dict[str, Any] = field(default_factory=dict)  # runtime version, GPU, power mode, clocks pinned, ...
    paired: Paired | None = None  # against the reference measured in the same rounds
    batched: list[Batched] = field(default_factory=list)  # the target's batch sizes above 1, where it has any

    def at_batch(self, batch: int) -> Batched | None:
        """The timing at ``batch`` (> 1), where this candidate has one."""
        return next((b for b in self.batched if b.latency.batch == batch), None)
