"""The build's configuration as frozen records: fields only, stored in the run and replayed by ``--resume``.

What each value may be is checked where it is used (``rank.check_constraints``,
``pipeline.config.validate``), except the seed's options: the workbench and the
build's check share :func:`check_seed_options`, which needs nothing but the
fields, so it sits beside them (and the CLI refuses a bad value without loading
torch).  What a run written before a field existed meant by it is that field's
``legacy`` default, which the codec fills in when the key is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scbp_edge.errors import SeedError
from scbp_edge.records.codec import legacy


@dataclass(frozen=True)
class SeedOptions:
    """How to obtain and cut a seed."""

    seed: str = "cifar-resnet20"
    weights: str | None = None
    num_classes: int | None = None
    input_size: int | None = None
    in_channels: int | None = None
    segments: str = "stages"
    round_to: int | None = None  # channel multiple; None: the target's (8 outside a build)
    trace_timeout: float | None = None  # seconds each trace may take; None: 30 under 10 M params, else 180; 0: none


def check_seed_options(opts: SeedOptions) -> None:
    """Raise SeedError naming the first value of ``opts`` that cannot describe a network."""
    for flag, value, low in (("--input-size", opts.input_size, 8), ("--num-classes", opts.num_classes, 2),
                             ("--round-to", opts.round_to, 1), ("--in-channels", opts.in_channels, 1)):
        if value is not None and value < low:
            raise SeedError(f"{flag} {value} must be at least {low}")
    t = opts.trace_timeout
    if t is not None and not (math.isfinite(t) and t >= 0):
        raise SeedError(f"--trace-timeout {t} must be a finite number of seconds, 0 or more (0: no bound)")


@dataclass(frozen=True)
class Constraints:
    """Hard limits on a shipped network; None means unconstrained."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float = 1.0
    max_energy_mj: float | None = None  # per inference; a candidate without a measured energy fails it
    speedup: float | None = None  # at least this much faster (p50) than the seed measured in the same run


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs; stored in the run so ``--resume`` replays it exactly."""

    seed: SeedOptions = field(default_factory=SeedOptions)
    target: str = "cpu"
    ratios: str = "0,0.25,0.5"
    monotone: bool = False
    exclude: tuple[str, ...] = ()
    # what a segment's ratio cuts: stream, inner or both (space.scope_variants); both: the best or tied pick at
    # 1.25x, 1.5x and 2.0x on both CIFAR seeds (benchmarks/results/scope_picks_*.md). Runs saved before issue 56
    # cut every segment's stream.
    scope: str = legacy("both", before="stream")
    limit: int | None = None
    sample_seed: int = 0
    max_params: int | None = None
    max_macs: int | None = None
    data: str | None = "digits"
    bn_images: int = 1024  # BN re-estimation images (train split): fewer leave ~0.7 pt of sampling noise
    val_fraction: float = 0.1
    dynamic_batch: bool = False
    constraints: Constraints = field(default_factory=Constraints)
    chunk: int = 8
    use_default_seed: bool = True
    top_k: int = 3
    epochs: int = 3
    distill: bool = True  # pruned networks learn from the seed while fine-tuning (benchmarks/results/scbp_vs_peers.md)
    init: str = "inherit"
    lr: float = 0.01  # +0.8 pt over 0.02 for a pruned network (benchmarks/results/recipe.md)
    augment: str = "shift"  # "flip": horizontal flips too, where mirrored images keep their class
    train_minutes: float | None = None  # the fine-tune stage's time budget, shared by measured step time
    devices: tuple[str, ...] = ()
    executor: str = "local"
    ray_address: str | None = None
    retries: int | None = None  # Ray only: retries of a task whose worker died (None: executors.RAY_RETRIES)
    measure_budget: int | None = None
    precisions: tuple[str, ...] | None = None  # None: the target's, within what its runtime can run
    calib_images: int = 512  # int8 calibration and reconstruction images, from the train split
    reconstruct: bool = True  # re-solve every derived network's weights against the seed (derive/reconstruct.py)
    residual_solve: bool = True  # residual writers fitted to the seed's block output (derive/residual.py)
    # the few-shot refinement of each pruned fine-tune's start (derive/refine.py), seconds per network, at most a
    # quarter of its --train-minutes share and taken from it; 0: off.  After the build's fine-tune it tied at 1.25x
    # and 1.5x and won at 2.0x on both CIFAR seeds (+0.75, +0.84 pt; benchmarks/results/reconstruct_refine_*.md).
    # Runs saved before it had none.
    refine_seconds: float = legacy(60.0, before=0.0)
    criterion: str = "l1"  # how a group's kept channels are chosen (README: data-aware ones not yet benchmarked)
    calibration: str = "minmax"
    qat_epochs: int = 0  # quantization-aware fine-tuning when post-training int8 loses more than qat_threshold
    qat_threshold: float = 0.5
    proxy: str = "adabn"  # second pass for the budget's shortlist: "distill" (short distillation fine-tune)
    margin: int = 2  # candidates just outside a latency budget that are still fine-tuned
    keep_models: bool = False  # also write every candidate's derived .pt (always, for runtimes timing them)
