"""The build's configuration: one typed record, checked in full before any folder or work exists.

It is stored in the run, so ``--resume`` replays it exactly; a value that
would crash a later stage is refused here instead, in one line, and never saved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scbp_edge.api import SeedOptions
from scbp_edge.errors import ScbpError
from scbp_edge.rank import Constraints
from scbp_edge.space import SCOPE_MODES

EXECUTORS = ("local", "ray")
INITS = ("inherit", "scratch")
PROXIES = ("adabn", "distill")
CRITERIA = ("l1", "taylor", "activation")  # the same tuple as derive.tp_adapter.CRITERIA (that module imports TP)
AUGMENTS = ("shift", "flip")  # shift: per-image shifts; flip: shifts plus horizontal flips


@dataclass
class BuildConfig:
    """Everything a build needs; stored in the run so ``--resume`` replays it exactly."""

    seed: SeedOptions = field(default_factory=SeedOptions)
    target: str = "cpu"
    ratios: str = "0,0.25,0.5"
    monotone: bool = False
    exclude: list[str] = field(default_factory=list)
    # what a segment's ratio cuts: stream, inner or both (space.scope_variants); both: the best or tied pick at
    # 1.25x, 1.5x and 2.0x on both CIFAR seeds (benchmarks/results/scope_picks_*.md)
    scope: str = "both"
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
    devices: list[str] = field(default_factory=list)
    executor: str = "local"
    ray_address: str | None = None
    retries: int | None = None  # Ray only: retries of a task whose worker died (None: executors.RAY_RETRIES)
    measure_budget: int | None = None
    precisions: list[str] | None = None  # None: the target's, within what its runtime can run
    calib_images: int = 512  # int8 calibration and reconstruction images, from the train split
    reconstruct: bool = True  # re-solve every derived network's weights against the seed (derive/reconstruct.py)
    residual_solve: bool = True  # residual writers fitted to the seed's block output (derive/residual.py)
    criterion: str = "l1"  # how a group's kept channels are chosen (README: data-aware ones not yet benchmarked)
    calibration: str = "minmax"
    qat_epochs: int = 0  # quantization-aware fine-tuning when post-training int8 loses more than qat_threshold
    qat_threshold: float = 0.5
    proxy: str = "adabn"  # second pass for the budget's shortlist: "distill" (short distillation fine-tune)
    margin: int = 2  # candidates just outside a latency budget that are still fine-tuned
    keep_models: bool = False  # also write every candidate's derived .pt (always, for runtimes timing them)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        d = dict(d)
        d.setdefault("scope", "stream")  # runs saved before issue 56 cut every segment's stream
        if d.get("executor") != "ray":  # runs saved before the Ray-only options were refused stored 2 here
            d["retries"] = d["ray_address"] = None
        d["seed"] = SeedOptions(**d["seed"])
        d["constraints"] = Constraints(**d["constraints"])
        return cls(**d)

    def differences(self, stored: BuildConfig) -> list[str]:
        """``--flag value`` of each option given here (not at its default) that differs from ``stored``.

        ``build --resume`` replays the stored run exactly, so such a flag would be ignored: it is refused instead.
        """
        default, given, kept = _flat(BuildConfig().to_dict()), _flat(self.to_dict()), _flat(stored.to_dict())
        return [f"{_FLAGS.get(k, '--' + k.split('.')[-1].replace('_', '-'))} {_shown(v)}"
                for k, v in given.items() if v != default.get(k) and k in kept and v != kept[k]]

    def validate(self) -> None:
        """Raise ScbpError naming the first option that cannot work, and what would."""
        self.seed.validate()
        ints = {"--profile-chunk": (self.chunk, 1), "--top-k": (self.top_k, 0), "--epochs": (self.epochs, 0),
                "--calib-images": (self.calib_images, 1),
                "--qat-epochs": (self.qat_epochs, 0), "--margin": (self.margin, 0), "--bn-images": (self.bn_images, 1)}
        for flag, (value, low) in ints.items():
            if value < low:
                raise ScbpError(f"{flag} {value} must be at least {low}")
        for flag, value, low in (("--retries", self.retries, 0), ("--limit", self.limit, 1),
                                 ("--measure-budget", self.measure_budget, 1),
                                 ("--max-params", self.max_params, 1), ("--max-macs", self.max_macs, 1),
                                 ("--round-to", self.seed.round_to, 1), ("--input-size", self.seed.input_size, 8),
                                 ("--num-classes", self.seed.num_classes, 2)):
            if value is not None and value < low:
                raise ScbpError(f"{flag} {value} must be at least {low}")
        if self.executor != "ray" and (self.retries is not None or self.ray_address is not None):
            given = " and ".join(f for f, v in (("--retries", self.retries), ("--ray-address", self.ray_address))
                                 if v is not None)
            raise ScbpError(f"{given}: for --executor ray only; add --executor ray, or drop {given}")
        if self.criterion != "l1" and not self.data:
            raise ScbpError(f"--criterion {self.criterion} chooses channels with data: give --data, or use l1")
        if self.top_k > 0 and self.epochs == 0 and self.data:
            raise ScbpError("--epochs 0 trains nothing: give --epochs 1 or more, or --top-k 0 to skip training")
        for flag, value, choices in (("--executor", self.executor, EXECUTORS), ("--init", self.init, INITS),
                                     ("--proxy", self.proxy, PROXIES), ("--criterion", self.criterion, CRITERIA),
                                     ("--augment", self.augment, AUGMENTS), ("--scope", self.scope, SCOPE_MODES)):
            if value not in choices:
                raise ScbpError(f"{flag} '{value}' is not one of {', '.join(choices)}")
        from scbp_edge.export.int8 import CALIBRATION

        if self.calibration not in CALIBRATION:
            raise ScbpError(f"--calibration '{self.calibration}' is not one of {', '.join(CALIBRATION)}")
        if not (0 < self.val_fraction < 1):
            raise ScbpError(f"--val-fraction {self.val_fraction} must be between 0 and 1")
        if self.train_minutes is not None and (not math.isfinite(self.train_minutes) or self.train_minutes <= 0):
            raise ScbpError(f"--train-minutes {self.train_minutes} must be a positive number of minutes")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ScbpError(f"--lr {self.lr} must be a positive number")
        if not math.isfinite(self.qat_threshold) or self.qat_threshold < 0:
            raise ScbpError(f"--qat-threshold {self.qat_threshold} must be 0 (always run QAT) or more points")
        self.constraints.validate()


#: option names that are not their field's name
_FLAGS = {"chunk": "--profile-chunk", "devices": "--device", "precisions": "--precision", "seed.seed": "--seed"}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _shown(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)
