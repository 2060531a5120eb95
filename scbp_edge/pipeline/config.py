"""The build's configuration (``records.BuildConfig``), checked in full before any folder or work exists.

It is stored in the run, so ``--resume`` replays it exactly; a value that
would crash a later stage is refused here instead, in one line, and never saved.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from scbp_edge.errors import ScbpError
from scbp_edge.rank import check_constraints
from scbp_edge.records import BuildConfig, decode, encode
from scbp_edge.records.config import check_seed_options
from scbp_edge.space import SCOPE_MODES

EXECUTORS = ("local", "ray")
INITS = ("inherit", "scratch")
PROXIES = ("adabn", "distill")
CRITERIA = ("l1", "taylor", "activation")  # the same tuple as derive.tp_adapter.CRITERIA (that module imports TP)
AUGMENTS = ("shift", "flip")  # shift: per-image shifts; flip: shifts plus horizontal flips


__all__ = ["BuildConfig", "differences", "stored_config", "validate"]


def stored_config(saved: BuildConfig | dict[str, Any]) -> BuildConfig:
    """The configuration a run stored, as its record (older runs' missing fields read as they meant then)."""
    cfg = saved if isinstance(saved, BuildConfig) else decode(BuildConfig, saved, "the run's configuration")
    if cfg.executor != "ray":  # runs saved before the Ray-only options were refused stored 2 here
        cfg = replace(cfg, retries=None, ray_address=None)
    return cfg


def differences(given: BuildConfig, stored: BuildConfig) -> list[str]:
    """``--flag value`` of each option in ``given`` (not at its default) that differs from ``stored``.

    ``build --resume`` replays the stored run exactly, so such a flag would be ignored: it is refused instead.
    """
    default, mine, kept = _flat(encode(BuildConfig())), _flat(encode(given)), _flat(encode(stored))
    return [f"{_FLAGS.get(k, '--' + k.split('.')[-1].replace('_', '-'))} {_shown(v)}"
            for k, v in mine.items() if v != default.get(k) and k in kept and v != kept[k]]


def validate(cfg: BuildConfig) -> None:
    """Raise ScbpError naming the first option of ``cfg`` that cannot work, and what would."""
    check_seed_options(cfg.seed)
    ints = {"--profile-chunk": (cfg.chunk, 1), "--top-k": (cfg.top_k, 0), "--epochs": (cfg.epochs, 0),
            "--calib-images": (cfg.calib_images, 1),
            "--qat-epochs": (cfg.qat_epochs, 0), "--margin": (cfg.margin, 0), "--bn-images": (cfg.bn_images, 1)}
    for flag, (value, low) in ints.items():
        if value < low:
            raise ScbpError(f"{flag} {value} must be at least {low}")
    for flag, value, low in (("--retries", cfg.retries, 0), ("--limit", cfg.limit, 1),
                             ("--measure-budget", cfg.measure_budget, 1),
                             ("--max-params", cfg.max_params, 1), ("--max-macs", cfg.max_macs, 1),
                             ("--round-to", cfg.seed.round_to, 1), ("--input-size", cfg.seed.input_size, 8),
                             ("--num-classes", cfg.seed.num_classes, 2)):
        if value is not None and value < low:
            raise ScbpError(f"{flag} {value} must be at least {low}")
    if cfg.executor != "ray" and (cfg.retries is not None or cfg.ray_address is not None):
        given = " and ".join(f for f, v in (("--retries", cfg.retries), ("--ray-address", cfg.ray_address))
                             if v is not None)
        raise ScbpError(f"{given}: for --executor ray only; add --executor ray, or drop {given}")
    if not cfg.refine_seconds >= 0:
        raise ScbpError(f"--refine-seconds {cfg.refine_seconds} must be 0 (off) or more")
    if cfg.criterion != "l1" and not cfg.data:
        raise ScbpError(f"--criterion {cfg.criterion} chooses channels with data: give --data, or use l1")
    if cfg.top_k > 0 and cfg.epochs == 0 and cfg.data:
        raise ScbpError("--epochs 0 trains nothing: give --epochs 1 or more, or --top-k 0 to skip training")
    for flag, value, choices in (("--executor", cfg.executor, EXECUTORS), ("--init", cfg.init, INITS),
                                 ("--proxy", cfg.proxy, PROXIES), ("--criterion", cfg.criterion, CRITERIA),
                                 ("--augment", cfg.augment, AUGMENTS), ("--scope", cfg.scope, SCOPE_MODES)):
        if value not in choices:
            raise ScbpError(f"{flag} '{value}' is not one of {', '.join(choices)}")
    from scbp_edge.export.int8 import CALIBRATION

    if cfg.calibration not in CALIBRATION:
        raise ScbpError(f"--calibration '{cfg.calibration}' is not one of {', '.join(CALIBRATION)}")
    if not (0 < cfg.val_fraction < 1):
        raise ScbpError(f"--val-fraction {cfg.val_fraction} must be between 0 and 1")
    if cfg.train_minutes is not None and (not math.isfinite(cfg.train_minutes) or cfg.train_minutes <= 0):
        raise ScbpError(f"--train-minutes {cfg.train_minutes} must be a positive number of minutes")
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise ScbpError(f"--lr {cfg.lr} must be a positive number")
    if not math.isfinite(cfg.qat_threshold) or cfg.qat_threshold < 0:
        raise ScbpError(f"--qat-threshold {cfg.qat_threshold} must be 0 (always run QAT) or more points")
    check_constraints(cfg.constraints)


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
