"""Shared CLI helpers: one console, JSON output, seed options."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()


def emit_json(obj: Any) -> None:
    """Machine-readable output on stdout (and nothing else there)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def human(n: float | int | None, unit: str = "") -> str:
    """1234567 -> '1.23M' (for tables)."""
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


SeedOpt = typer.Option("cifar-resnet20", "--seed", help="Seed name (scbp-edge seeds) or package.module:factory")
WeightsOpt = typer.Option(None, "--weights", help="Checkpoint path, or a torchvision weight name (online only)")
SegmentsOpt = typer.Option("stages", "--segments", help="'stages' or a number N of equal segments")
RoundOpt = typer.Option(8, "--round-to", help="Round pruned widths to this channel multiple")
ClassesOpt = typer.Option(None, "--num-classes", help="Classes of the seed's classifier")
InputOpt = typer.Option(None, "--input-size", help="Input side in pixels (default: the seed's)")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout")
