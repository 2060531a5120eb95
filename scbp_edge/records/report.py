"""What ranking and the report hand on: a measured point, the selection and its card, the report itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from scbp_edge.records.codec import decode, encode, spread
from scbp_edge.records.measurement import Batched, Paired


@dataclass(frozen=True)
class RankingPoint:
    """One measured candidate as ranking, training picks and reports see it (rank/points.py)."""

    id: str
    network: str
    precision: str
    ratios: tuple[float, ...]
    reference: str | None
    is_seed: bool
    accuracy: float | None
    accuracy_kind: Literal["test", "proxy"]
    proxy_accuracy: float | None
    test_accuracy: float | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cv: float
    size_mb: float
    params: int
    macs: int
    speedup: float | None = None
    p50_interval_ms: tuple[float, float] | None = None
    round_p50_ms: tuple[float, ...] = ()
    noisy: bool = False
    rounds_measured: int | None = None
    rounds_set_aside: int = 0
    slowest_round: float | None = None
    memory_mb: float | None = None
    device_memory_mb: float | None = None
    energy_mj: float | None = None
    paired: Paired | None = None
    reconstruction: dict[str, Any] | None = None
    test_images: int | None = None
    proxy_images: int | None = None
    test_interval: tuple[float, float] | None = None
    proxy_interval: tuple[float, float] | None = None
    vs_seed: dict[str, Any] | None = None  # the paired difference with the seed (rank/stats.py)
    batched: tuple[Batched, ...] = ()  # timed at the target's batch sizes above 1 (pipeline/batches.py)


@dataclass(frozen=True)
class Undecided:
    """A candidate whose accuracy drop cannot be told from the limit at this test size."""

    diff_pt: float
    interval_pt: tuple[float, float]
    n: int
    meets: bool
    images_to_decide: int | None


@dataclass(frozen=True)
class Selection:
    """The chosen candidate (or none) and why, with the candidates that met the constraints."""

    id: str | None
    reason: str
    feasible: tuple[str, ...] = ()
    undecided: dict[str, Undecided] | None = None
    accuracy_kind: str | None = None


@dataclass(frozen=True)
class Card:
    """The summary card: a title, labelled rows, warnings in words, and the package command."""

    title: str
    rows: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = ()
    command: str | None = None


@dataclass(frozen=True)
class Report:
    """report.json: the selection and its card, every measured point, the front, what failed, and the rest."""

    selection: Selection
    points: tuple[RankingPoint, ...]
    front: tuple[str, ...]
    failed: tuple[dict[str, Any], ...]
    counts: dict[str, int]
    card: Card | None = None
    seed_point: RankingPoint | None = None
    extra: dict[str, Any] = spread()  # run, weights, training, budget: typed as their stages move onto records

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return decode(cls, data, "report")

    def to_json(self) -> dict[str, Any]:
        return encode(self)
