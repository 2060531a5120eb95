"""Targets: one TOML file each, validated strictly (unknown fields and bad values are errors).

This module checks a file on its own terms (fields, types, ranges); what the
named runtime can do is checked against its declared capabilities by
:func:`scbp_edge.runtimes.check_target`.
"""

from __future__ import annotations

import math
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scbp_edge.errors import TargetError
from scbp_edge.records.codec import decode
from scbp_edge.resources import data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "int8")
ENERGY = ("rapl", "nvml", "tegrastats", "none")
LOCATIONS = ("local", "ssh")
#: `docker run` options a target may add for its served image (GPU access, a cache volume, environment);
#: nothing that widens the container's privileges (--privileged, --cap-add, host paths, host namespaces)
RUN_OPTIONS = ("--runtime", "--gpus", "--group-add", "--device", "-v", "--volume", "--shm-size", "-e", "--env")


@dataclass
class MeasurePolicy:
    """Warm-up and stopping rule: each round runs until min_runs AND min_seconds are reached."""

    warmup: int = 10
    warmup_seconds: float = 0.0  # and at least this long: caches, allocator and clocks settle before timing
    rounds: int = 5
    min_runs: int = 20
    min_seconds: float = 0.2
    timeout_s: float = 120.0
    power_interval_ms: int = 100  # power sampling period (tegrastats, NVML without an energy counter)
    idle_seconds: float = 1.0  # idle pause before timing, to report energy above idle


@dataclass
class Target:
    """One deployment target; JSON-serialisable."""

    name: str
    backend: str
    description: str = ""
    precisions: list[str] = field(default_factory=lambda: ["fp32"])  # searched by default, first = reference
    threads: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    input_size: int = 0
    round_to: int = 8
    energy: str = "none"
    location: str = "local"
    workspace_mb: int = 1024
    fallback_backend: str | None = None
    base_image: str = ""  # Docker base image of the served model (package --base-image overrides)
    run_args: list[str] = field(default_factory=list)  # `docker run` options the image needs (see RUN_OPTIONS)
    measure: MeasurePolicy = field(default_factory=MeasurePolicy)
    source: str = ""


def stored_target(saved: dict[str, Any]) -> Target:
    """The target a run stored (report.json's ``run.target``) as its record; where it came from is not kept."""
    d = {k: v for k, v in saved.items() if k != "source"}
    if "precision" in d:  # runs recorded before precision became a list
        d["precisions"] = [d.pop("precision")]
    return decode(Target, d, "the run's target")


def _type_ok(value: Any, typ: Any) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # TOML true is not a number
    if typ is int:
        return isinstance(value, int)
    if typ is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if typ is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if type(None) in args:
        return value is None or _type_ok(value, next(a for a in args if a is not type(None)))
    return True


_TYPE_NAMES = {int: "an integer", float: "a finite number", str: "a string", list[str]: "a list of strings",
               list[int]: "a list of integers", str | None: "a string"}


def _check_fields(where: str, raw: dict[str, Any], cls: type, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    allowed = {f.name for f in fields(cls)} - {"source", "measure"}
    for key, value in raw.items():
        if key not in allowed:
            raise TargetError(f"{where}: unknown field '{prefix}{key}'; allowed: {', '.join(sorted(allowed))}")
        if not _type_ok(value, hints[key]):
            raise TargetError(f"{where}: field '{prefix}{key}' must be {_TYPE_NAMES.get(hints[key], hints[key])}, "
                              f"got {value!r}")


def _validate(where: str, raw: dict[str, Any]) -> Target:
    if "precision" in raw:  # the single-precision form of earlier releases
        if "precisions" in raw:
            raise TargetError(f"{where}: give 'precisions' (a list) or 'precision', not both")
        raw["precisions"] = [raw.pop("precision")] if isinstance(raw["precision"], str) else raw.pop("precision")
    measure = raw.pop("measure", {})
    if not isinstance(measure, dict):
        raise TargetError(f"{where}: [measure] must be a table")
    _check_fields(where, raw, Target)
    _check_fields(where, measure, MeasurePolicy, "measure.")
    for key in ("name", "backend"):
        if key not in raw:
            raise TargetError(f"{where}: required field '{key}' is missing")
        if not raw[key].strip():
            raise TargetError(f"{where}: field '{key}' is empty")
    for key, value in measure.items():
        if value <= 0 and key not in ("warmup", "warmup_seconds") or value < 0:
            raise TargetError(f"{where}: field 'measure.{key}' must be positive, got {value}")
    for key in ("threads", "input_size", "round_to", "workspace_mb"):
        if key in raw and (raw[key] < 0 or (key == "round_to" and raw[key] < 1)):
            raise TargetError(f"{where}: field '{key}' must be {'>= 1' if key == 'round_to' else '>= 0'}")
    for key, choices in (("energy", ENERGY), ("location", LOCATIONS)):
        if key in raw and raw[key] not in choices:
            raise TargetError(f"{where}: field '{key}' is {raw[key]!r}; choose one of {', '.join(choices)}")
    precisions = raw.get("precisions", ["fp32"])
    bad = [p for p in precisions if p not in PRECISIONS]
    if not precisions or bad or len(set(precisions)) != len(precisions):
        raise TargetError(f"{where}: field 'precisions' must list distinct values of {', '.join(PRECISIONS)}, "
                          f"got {precisions!r}")
    sizes = raw.get("batch_sizes", [1])
    if not sizes or not all(b >= 1 for b in sizes) or len(set(sizes)) != len(sizes):
        raise TargetError(f"{where}: field 'batch_sizes' must be a non-empty list of distinct positive integers")
    _check_run_args(where, raw.get("run_args", []))
    return Target(**raw, measure=MeasurePolicy(**measure), source=where)


def _check_run_args(where: str, args: list[str]) -> None:
    """``run_args`` are option/value pairs from :data:`RUN_OPTIONS`; volumes are named, not host paths."""
    pairs = []
    i = 0
    while i < len(args):
        opt, eq, val = args[i].partition("=")
        if not eq:
            val = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        pairs.append((opt, val))
        i += 1
    for opt, val in pairs:
        if opt not in RUN_OPTIONS:
            raise TargetError(f"{where}: run_args option '{opt}' is not allowed; use {', '.join(RUN_OPTIONS)}")
        if not val or val.startswith("-"):
            raise TargetError(f"{where}: run_args option '{opt}' needs a value")
        if opt in ("-v", "--volume") and (":" not in val or val.split(":")[0].startswith(("/", ".", "~"))):
            raise TargetError(f"{where}: run_args volume '{val}' must be a named volume (NAME:/path), "
                              "not a host path")


def targets_dir() -> Path:
    """Where the built-in target files are (the checkout's or the wheel's ``targets/``)."""
    return data_dir("targets")


def list_targets() -> list[str]:
    """Names of the built-in targets."""
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """A built-in target by name, or a user TOML file by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.exists()):
        path = targets_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise TargetError(
                f"unknown target '{name_or_path}'; built-in: {', '.join(list_targets())}, or give a path to a .toml"
            )
    if path.is_dir():
        raise TargetError(f"--target '{name_or_path}' is a folder; give a target name ({', '.join(list_targets())}) "
                          "or a .toml file")
    if not path.is_file():
        raise TargetError(f"target file '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise TargetError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return _validate(str(path), raw)
