"""``build``: derive -> proxy -> export/quantize -> measure -> fine-tune -> rank -> report, resumable.

The stages live in this package's modules (``prepare``, ``stages``, ``train``,
``batches``, the run itself in ``run``).  Importing the package loads none of
them, so the CLI checks a configuration (``pipeline.config.validate``) and
refuses a bad value before torch is loaded.
"""

from __future__ import annotations

from pathlib import Path

from scbp_edge.errors import BuildInterrupted
from scbp_edge.records import BuildConfig, Report

__all__ = ["BuildConfig", "BuildInterrupted", "build"]


def build(cfg: BuildConfig, runs: Path = Path("runs"), resume: Path | None = None) -> Report:
    """Run (or resume) a build; returns its report, ``run_dir`` set (:func:`scbp_edge.pipeline.run.build`)."""
    from scbp_edge.pipeline.run import build as run_build

    return run_build(cfg, runs, resume)
