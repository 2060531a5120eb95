"""Test helpers: a fast CPU target file and a CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAST_TARGET = """
name = "cpu-fast"
backend = "onnxruntime"
threads = 1
round_to = 8
energy = "rapl"
[measure]
warmup = 2
rounds = 2
min_runs = 5
min_seconds = 0.05
timeout_s = 60
"""


def fast_target(tmp: Path) -> Path:
    path = tmp / "cpu-fast.toml"
    path.write_text(FAST_TARGET)
    return path


def cli(*args: str, cwd: Path | None = None, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``scbp-edge ARGS`` as a user would (separate process, real exit code); ``env`` adds variables."""
    env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "scbp_edge.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def point(id: str, **fields):
    """A ranking point (records.RankingPoint) with ``fields`` set and neutral values for the rest."""
    from scbp_edge.records import RankingPoint

    base = {"network": id, "precision": "fp32", "ratios": (0.0,), "reference": None, "is_seed": False,
            "accuracy": None, "accuracy_kind": "proxy", "proxy_accuracy": None, "test_accuracy": None,
            "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "cv": 0.0, "size_mb": 1.0, "params": 1, "macs": 1}
    return RankingPoint(id=id, **{**base, **fields})
