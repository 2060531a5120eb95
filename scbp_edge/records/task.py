"""What crosses an executor: the job each per-network task gets, the data they share, and what each returns.

A task runs in this process or on a Ray worker on another machine, so every
field is plain data (numbers, bytes, tensors, state dicts): the driver writes
the files and the store. Expected failures come back as a :class:`Failure`
(per precision, where only that precision failed), so executors retry only
real crashes. A renamed field fails where the record is built, in every test
that runs a build, not as a run of failed candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from scbp_edge.errors import ScbpError
from scbp_edge.records.candidate import Proxy
from scbp_edge.records.config import SeedOptions
from scbp_edge.records.reconstruction import Reconstruction

PROXY_STEPS = 200  # distillation steps of the second-stage proxy (benchmarks/results/scbp_vs_peers.md)


class Job(Protocol):
    """What an executor needs of a job: the network it is for (its key in ``on_result``)."""

    @property
    def network(self) -> str: ...


@dataclass(frozen=True)
class NetworkJob:
    """Derive one network, score it by the proxy, export it and make each precision's artifact."""

    network: str
    ratios: tuple[float, ...]
    precisions: tuple[str, ...]
    scopes: tuple[str, ...] = ()  # what each segment cuts; (): every segment its residual stream too


@dataclass(frozen=True)
class TrainJob:
    """Fine-tune one network once (``seconds``: a time budget in place of epochs) and quantize it."""

    network: str
    ratios: tuple[float, ...]
    precisions: tuple[str, ...]
    seconds: float | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyJob:
    """The second-stage proxy (a short distillation) of one shortlisted network."""

    network: str
    ratios: tuple[float, ...]
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyData:
    """Images every candidate's proxy sees: BN re-estimation, validation, int8 calibration (tensors)."""

    bn_x: Any
    val_x: Any
    val_y: Any
    calib_x: Any
    skipped: int = 0


@dataclass(frozen=True)
class TrainData:
    """A fine-tune's images: training, test, int8 calibration and validation (the seed's judgement), as tensors."""

    x: Any
    y: Any
    test_x: Any
    test_y: Any
    calib_x: Any
    val_x: Any = None
    val_y: Any = None


@dataclass(frozen=True)
class Failure:
    """Why a task (or one precision of it) failed, and at which stage."""

    stage: str
    error: str

    @classmethod
    def of(cls, stage: str, exc: Exception) -> Failure:
        """Our own errors say what to do in one line; others keep their type name, shortened."""
        if isinstance(exc, ScbpError):
            return cls(stage, str(exc))
        return cls(stage, f"{type(exc).__name__}: {str(exc)[:300]}")


@dataclass(frozen=True)
class Exported:
    """An ONNX model as bytes, with what ``export_onnx`` says about it."""

    data: bytes
    info: dict[str, Any]


@dataclass(frozen=True)
class Score:
    """Top-1 of one artifact: the figure, what it is, and which images it got right (packed, rank/stats.py)."""

    value: float | None
    kind: str = ""
    correct: str | None = None
    images: int | None = None
    ptq_value: float | None = None  # quantization-aware training kept: the post-training figure it beat
    qat: dict[str, Any] | None = None  # the quantization-aware fine-tune's own summary


@dataclass(frozen=True)
class Variant:
    """One precision of a network: its accuracy and own artifact (int8 QDQ), or why this precision alone failed."""

    accuracy: Proxy | Score | None = None
    artifact: bytes | None = None  # None: the precision runs from the fp32 export
    calibration: dict[str, Any] | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Weights:
    """A derived network's weights and the plan that rebuilds its shape (for a .pt the runtimes or users load)."""

    state: dict[str, Any]
    keep: dict[str, Any]
    ignored: Any
    ratios: tuple[float, ...]
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DerivedNetwork:
    """What :func:`scbp_edge.tasks.evaluate_network` returns for a network it could derive and export."""

    onnx: Exported
    variants: dict[str, Variant]
    static: dict[str, int | None]  # params, macs, size_bytes
    segment_macs: list[int]
    reconstruction: Reconstruction | None
    criterion: str
    weights: Weights | None = None  # only where the runtime times the PyTorch model


@dataclass(frozen=True)
class TrainStats:
    """What one fine-tune did: the steps it took, the epochs they make, and its wall seconds."""

    steps: int
    epochs: float
    seconds: float


@dataclass(frozen=True)
class TrainedNetwork:
    """What :func:`scbp_edge.tasks.train_network` returns: accuracies, per-precision results, the weights."""

    test_accuracy: float
    test_accuracy_before: float
    per_precision: dict[str, Variant]
    weights: Weights
    onnx: Exported
    train_images: int
    test_images: int
    teacher: str | None
    reconstruction: Reconstruction | None
    criterion: str
    stats: TrainStats | None = None
    validation: dict[str, Any] | None = None  # the seed reference's judgement: as it came vs fine-tuned, and kept


@dataclass(frozen=True)
class DistillScore:
    """The second-stage proxy of one network: validation top-1 after ``steps`` distillation steps."""

    value: float
    steps: int


@dataclass(frozen=True)
class Calibration:
    """The images the channel criterion and reconstruction were computed on, and how (``Workbench.calibrate``)."""

    x: Any  # float tensor, N x C x H x W
    y: Any  # int64 labels
    criterion: str = "l1"
    reconstruct: bool = True
    residual: bool = True  # residual writers fitted to the seed's block output (derive/residual.py)


@dataclass(frozen=True)
class SeedPayload:
    """What a task needs to rebuild the build's workbench: seed options, spec, weights and calibration."""

    opts: SeedOptions
    spec: dict[str, Any]  # a seeds.SeedSpec, encoded (records cannot import seeds)
    state: dict[str, Any]  # the seed's state dict
    calib: Calibration | None = None


@dataclass(frozen=True)
class DeriveContext:
    """What every derive task of a build shares: the seed, the proxy's data and how to make each artifact."""

    payload: SeedPayload
    data: ProxyData | None  # None without data: the proxy is the share of parameters kept
    dynamic_batch: bool
    seed_params: int
    int8: dict[str, Any]  # the target's int8 settings (pipeline.stages.int8_settings)
    keep_model: bool = False  # also return the derived weights (a runtime that times .pt files needs them)


@dataclass(frozen=True)
class TrainContext:
    """What every fine-tune of a build shares: the seed, the images, the recipe and the teacher."""

    payload: SeedPayload
    train: TrainData
    epochs: int
    lr: float
    init: str
    distill: bool
    int8: dict[str, Any]
    qat_epochs: int = 0
    qat_threshold: float = 0.5
    flip: bool = False
    teacher_state: dict[str, Any] | None = None  # the fine-tuned seed's weights where it is the better teacher
    refine_seconds: float = 0.0  # the few-shot refinement of each pruned start (derive/refine.py); 0: none


@dataclass(frozen=True)
class ProxyContext:
    """What every second-stage proxy of a build shares: the seed, the training images and the validation split."""

    payload: SeedPayload
    train: TrainData
    val: ProxyData
    steps: int = PROXY_STEPS
