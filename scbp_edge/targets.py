"""Targets: one TOML file each, validated strictly (unknown fields and bad values are errors)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from scbp_edge.errors import TargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TARGETS_DIR = Path(os.environ.get("SCBP_TARGETS_DIR", Path(__file__).resolve().parents[1] / "targets"))
PRECISIONS = ("fp32", "fp16", "int8")
ENERGY = ("rapl", "nvml", "tegrastats", "none")
LOCATIONS = ("local", "ssh")


@dataclass
class MeasurePolicy:
    """Warm-up and stopping rule: each round runs until min_runs AND min_seconds are reached."""

    warmup: int = 10
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
    precision: str = "fp32"
    threads: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    input_size: int = 0
    round_to: int = 8
    energy: str = "none"
    location: str = "local"
    workspace_mb: int = 1024
    fallback_backend: str | None = None
    measure: MeasurePolicy = field(default_factory=MeasurePolicy)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        d = dict(d)
        d["measure"] = MeasurePolicy(**d.get("measure", {}))
        return cls(**d)


_FLOAT_MEASURE = ("min_seconds", "timeout_s", "idle_seconds")


def _check_type(where: str, key: str, value: Any, typ: Any) -> None:
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if typ in ok and not ok[typ]:
        raise TargetError(f"{where}: field '{key}' must be {typ.__name__}, got {value!r}")


def _validate(where: str, raw: dict[str, Any]) -> Target:
    from scbp_edge.backends import backend_names

    allowed = {f.name for f in fields(Target)} - {"source"}
    for key in raw:
        if key not in allowed:
            raise TargetError(f"{where}: unknown field '{key}'; allowed: {', '.join(sorted(allowed))}")
    for key in ("name", "backend"):
        if key not in raw:
            raise TargetError(f"{where}: required field '{key}' is missing")
    measure = raw.pop("measure", {})
    if not isinstance(measure, dict):
        raise TargetError(f"{where}: [measure] must be a table")
    m_fields = {f.name: f for f in fields(MeasurePolicy)}
    for key, value in measure.items():
        if key not in m_fields:
            raise TargetError(f"{where}: unknown field 'measure.{key}'; allowed: {', '.join(m_fields)}")
        _check_type(where, f"measure.{key}", value, float if key in _FLOAT_MEASURE else int)
        if value <= 0 and key != "warmup" or value < 0:
            raise TargetError(f"{where}: field 'measure.{key}' must be positive, got {value}")
    for key in ("threads", "input_size", "round_to", "workspace_mb"):
        if key in raw:
            _check_type(where, key, raw[key], int)
            if raw[key] < 0 or (key == "round_to" and raw[key] < 1):
                raise TargetError(f"{where}: field '{key}' must be {'>= 1' if key == 'round_to' else '>= 0'}")
    for key, choices in (("precision", PRECISIONS), ("energy", ENERGY), ("location", LOCATIONS)):
        if key in raw and raw[key] not in choices:
            raise TargetError(f"{where}: field '{key}' is {raw[key]!r}; choose one of {', '.join(choices)}")
    for key in ("backend", "fallback_backend"):
        if key in raw and raw[key] not in backend_names():
            raise TargetError(
                f"{where}: field '{key}' names unknown backend {raw[key]!r}; known: {', '.join(backend_names())}"
            )
    sizes = raw.get("batch_sizes", [1])
    if not isinstance(sizes, list) or not sizes or not all(isinstance(b, int) and b >= 1 for b in sizes):
        raise TargetError(f"{where}: field 'batch_sizes' must be a non-empty list of positive integers")
    return Target(**raw, measure=MeasurePolicy(**measure), source=where)


def list_targets() -> list[str]:
    """Names of the built-in targets."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """A built-in target by name, or a user TOML file by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.exists()):
        path = TARGETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise TargetError(
                f"unknown target '{name_or_path}'; built-in: {', '.join(list_targets())}, or give a path to a .toml"
            )
    if not path.is_file():
        raise TargetError(f"target file '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return _validate(str(path), raw)
