"""A candidate as the run store holds it: status and failure, static costs, artifacts, proxy, training result.

Field for field the JSON columns of ``run.sqlite`` (store.py); the codec reads
rows written before these records existed. Keys a record does not name (a seed
family's costs, a precision's extra figures) stay in its ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from scbp_edge.records.codec import decode, encode, spread
from scbp_edge.records.measurement import Measurement
from scbp_edge.records.reconstruction import Reconstruction

Status = Literal["pending", "exported", "measured", "failed"]


@dataclass(frozen=True)
class StaticCosts:
    """What the plan says a network costs, before it is built: parameters, multiply-accumulates, bytes."""

    params: int
    macs: int
    size_bytes: int
    segment_macs: tuple[int, ...] | None = None
    extra: dict[str, Any] = spread()


@dataclass(frozen=True)
class OnnxArtifact:
    """The exported model: where it is, its hash, and how far it is from the PyTorch network."""

    path: str
    size_bytes: int
    sha256: str
    opset: int | None = None
    dynamic_batch: bool = False
    max_abs_diff: float | None = None
    rel_diff: float | None = None
    slimmed: bool = False
    slim_note: str | None = None
    extra: dict[str, Any] = spread()


@dataclass(frozen=True)
class Proxy:
    """The cheap accuracy every candidate gets (adaptive BN, then top-1 on the validation split)."""

    value: float | None
    kind: str
    stale_bn: float | None = None
    adapted_bn: float | None = None
    bn: str | None = None
    bn_images: int | None = None
    val_images: int | None = None
    skipped_images: int | None = None
    reconstruction: Reconstruction | None = None
    extra: dict[str, Any] = spread()


@dataclass(frozen=True)
class SeedJudgement:
    """The seed reference: the seed as it came against its fine-tune on validation, and which was kept."""

    as_it_came: float
    fine_tuned: float
    images: int
    kept: Literal["as it came", "fine-tuned"]


@dataclass(frozen=True)
class TrainingResult:
    """One fine-tune's outcome for one candidate: accuracies, the budget it got, its artifacts."""

    test_accuracy: float | None
    fp32_test_accuracy: float | None = None
    test_accuracy_before: float | None = None
    epochs: float | None = None
    steps: int | None = None
    train_seconds: float | None = None
    init: str | None = None
    distill: bool | None = None
    teacher: str | None = None
    augment: str | None = None
    lr: float | None = None
    train_images: int | None = None
    test_images: int | None = None
    checkpoint: str | None = None
    onnx: str | None = None
    test_correct: str | None = None  # per test image, packed (rank/stats.py)
    validation: dict[str, Any] | None = None  # the seed's: see seed_judgement()
    extra: dict[str, Any] = spread()


@dataclass(frozen=True)
class CandidateRow:
    """One row of the run store: one network at one precision, and everything known about it so far."""

    id: str
    position: int
    network: str
    precision: str
    ratios: tuple[float, ...]
    status: Status = "pending"
    scopes: tuple[str, ...] = ()  # what each segment cuts (derive.SCOPES); (): every segment its stream
    reference: str | None = None
    stage: str | None = None
    error: str | None = None
    static: StaticCosts | None = None
    onnx: OnnxArtifact | None = None
    accuracy: Proxy | None = None
    measurement: Measurement | None = None
    trained: TrainingResult | None = None
    attempts: int = 0
    updated: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CandidateRow:
        """A store row (JSON columns decoded) as a record; a value that does not fit raises RecordError."""
        return decode(cls, row, f"candidate {row.get('id', '?')}")

    def to_row(self) -> dict[str, Any]:
        """The row as the store writes it (JSON columns as plain values)."""
        return encode(self)


def seed_judgement(trained: TrainingResult | None) -> SeedJudgement | None:
    """The seed reference's judgement stored with its training result, where there is one."""
    v = trained.validation if trained else None
    if not v:
        return None
    return SeedJudgement(float(v["as it came"]), float(v["fine-tuned"]), int(v["images"]), v["kept"])
