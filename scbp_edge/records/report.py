"""What ranking and the report hand on: a measured point, the selection and its card, the report itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from scbp_edge.records.codec import decode, encode, spread, transient
from scbp_edge.records.config import BuildConfig
from scbp_edge.records.measurement import Batched, Paired
from scbp_edge.records.reconstruction import Reconstruction


def config_text(ratios: Sequence[float], scopes: Sequence[str] = ()) -> str:
    """``0.5i,0.25,0``: ratios as ``--config`` writes them, ``i`` where a segment cuts only its blocks' insides."""
    marks = ["i" if s == "inner" else "" for s in scopes] or [""] * len(ratios)
    return ",".join(f"{r:g}{m}" for r, m in zip(ratios, marks))


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
    scopes: tuple[str, ...] = ()  # what each segment cuts; (): every segment its residual stream too
    memory_mb: float | None = None
    device_memory_mb: float | None = None
    energy_mj: float | None = None
    paired: Paired | None = None
    reconstruction: Reconstruction | None = None
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
class RunFacts:
    """What the run was: when, its configuration, target, runtime, precisions, notes, seed and segmentation."""

    created: str | None = None
    config: BuildConfig | None = None  # None: a run that stopped before it stored one
    target: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    precisions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seed: dict[str, Any] | None = None
    segmentation: dict[str, Any] | None = None


@dataclass(frozen=True)
class DataSummary:
    """The images the build used, per split, and the unreadable ones it left out."""

    train: int
    val: int
    test: int
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainedRow:
    """One fine-tuned candidate against the seed fine-tuned alike."""

    id: str
    precision: str
    proxy_accuracy: float | None
    test_accuracy: float
    p50_ms: float
    params: int
    speedup_vs_seed: float | None
    params_vs_seed: float | None
    accuracy_delta_vs_seed: float | None


@dataclass(frozen=True)
class TrainedSummary:
    """The fine-tuned candidates, fastest first, and how well the proxy ranked them (Spearman)."""

    seed_test_accuracy: float | None = None
    rows: tuple[TrainedRow, ...] = ()
    proxy_spearman: float | None = None


@dataclass(frozen=True)
class BudgetResult:
    """With a latency budget: how many candidates met it, the best of them, and how far it fell from the seed."""

    max_latency_ms: float | None
    speedup: float | None
    best: str | None
    inside: int
    accuracy_kind: str | None
    best_speedup: float | None
    best_accuracy: float | None
    seed_accuracy: float | None
    accuracy_delta: float | None


@dataclass(frozen=True)
class WeightsSummary:
    """How the candidates' weights were made: channel criterion, reconstruction and where it could not help."""

    criterion: str = "l1"
    reconstruct: bool = True
    reconstructed: int = 0
    skipped: tuple[str, ...] = ()
    images: int = 0
    median_seconds: float | None = None
    kept_l1: dict[str, Any] = field(default_factory=dict)
    strong_ridge: tuple[str, ...] = ()
    teacher: dict[str, Any] | None = None
    residual: tuple[str, ...] = ()  # residual writers fitted to the seed's block output (derive/residual.py)


@dataclass(frozen=True)
class FlopsDisagreement:
    """How the MACs ordering and the measured p50 ordering disagree (rank.flops_disagreement)."""

    kendall_tau: float | None = None
    pairs: int = 0
    misordered_pairs: tuple[dict[str, Any], ...] = ()
    misordered_candidates: tuple[str, ...] = ()
    noise_band: float = 0.05


@dataclass(frozen=True)
class FailedCandidate:
    """A candidate that failed alone: the stage it failed in and the error; the run went on without it."""

    id: str
    stage: str | None
    error: str | None


@dataclass(frozen=True)
class TrainingPlan:
    """The fine-tune stage: the networks it trains, why each pruned one was picked, and those finished.

    ``done`` is written at the stage's start and end only; each network's row holds its own result as soon as it
    finishes, so an interrupted stage is counted from the rows (``report._training_state``).
    """

    state: str  # "running" or "done"
    networks: tuple[str, ...] = ()
    why: dict[str, str] = field(default_factory=dict)
    done: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingState(TrainingPlan):
    """The fine-tune stage as the report shows it: the plan, and how many networks have their training."""

    interrupted: bool = False
    trained: int = 0
    wanted: int = 0


@dataclass(frozen=True)
class MeasureBudget:
    """A measurement budget's outcome: the budget, the rows measured, and those left unmeasured."""

    budget: int
    measured: int
    not_measured: int


@dataclass(frozen=True)
class ClassifierSwap:
    """The data had another class count than the seed: the new classifier, its training and the seed's accuracy."""

    from_classes: int
    to_classes: int
    epochs: int
    test_accuracy: float


@dataclass(frozen=True)
class Report:
    """report.json: the run, every measured point, the front, the selection and its card, what failed, and the rest.

    Fields that older report.json files may lack have defaults, so they still decode.
    """

    selection: Selection
    points: tuple[RankingPoint, ...]
    front: tuple[str, ...]
    run: RunFacts = field(default_factory=RunFacts)
    fingerprints: dict[str, Any] = field(default_factory=dict)
    data: DataSummary | None = None
    accuracy_kind: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    unreadable_rows: int = 0
    candidates: tuple[dict[str, Any], ...] = ()  # the store's rows as it holds them (store.salvage)
    seed_point: RankingPoint | None = None
    trained: TrainedSummary = field(default_factory=TrainedSummary)
    training: TrainingState | None = None  # the fine-tune stage's plan, with its counts
    budget_result: BudgetResult | None = None
    budget: MeasureBudget | None = None
    classifier_replaced: ClassifierSwap | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    weights: WeightsSummary = field(default_factory=WeightsSummary)
    flops_vs_measured: FlopsDisagreement = field(default_factory=FlopsDisagreement)
    energy_note: tuple[str, ...] = ()
    energy_sources: tuple[str, ...] = ()
    measured_with: dict[str, list[Any]] = field(default_factory=dict)
    failed: tuple[FailedCandidate, ...] = ()
    card: Card | None = None
    extra: dict[str, Any] = spread()  # keys a newer scbp-edge wrote
    run_dir: str | None = transient(lambda: None)  # where the build wrote it (never written into report.json)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return decode(cls, data, "report")

    def to_json(self) -> dict[str, Any]:
        return encode(self)

    @property
    def target_name(self) -> str:
        return (self.run.target or {}).get("name", "the target")
