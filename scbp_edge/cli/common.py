"""Shared CLI helpers: one console, JSON output, seed options."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import typer
from rich.console import Console

from scbp_edge.records.config import BuildConfig

console = Console(stderr=True)
out = Console()


def emit_json(obj: Any) -> None:
    """Machine-readable output on stdout (and nothing else there); records as the JSON they encode to."""
    from scbp_edge.records import encode

    sys.stdout.write(json.dumps(encode(obj), indent=2, default=str) + "\n")


@contextmanager
def _fd1_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def quiet_stdout(json_out: bool):
    """With --json, everything else written to stdout (libraries' prints, C code) goes to stderr meanwhile:
    stdout holds only the JSON document."""
    return _fd1_to_stderr() if json_out else nullcontext()


def human(n: float | int | None, unit: str = "") -> str:
    """1234567 -> '1.23M' (for tables)."""
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


SeedOpt = typer.Option("cifar-resnet20", "--seed", help="The CNN to compress: a name (scbp-edge seeds lists them) or "
                       "package.module:factory")
RatiosOpt = typer.Option("0,0.25,0.5", "--ratios", help="Fractions of filters removed per segment, one set for all "
                         "(0,0.25,0.5) or one per segment (0,0.5/0/0,0.25)")
MonotoneOpt = typer.Option(False, "--monotone", help="Only configurations whose ratios never shrink with depth")
ExcludeOpt = typer.Option([], "--exclude", help="Skip configurations matching a pattern like '0.5,*,*' (repeatable; "
                          "0.5i or 0.5s match one scope only)")
ScopeOpt = typer.Option("both", "--scope", help="What a segment's ratio cuts: stream (every channel group in it, "
                        "the residual stream too), inner (only the insides of its blocks) or both (try each: the "
                        "default, measured best in benchmarks/results/scope_picks_*.md)")
ConfigScopeOpt = typer.Option("stream", "--scope", help="What --config's ratios cut where an item has no i or s: "
                              "stream (the residual stream too) or inner (only the insides of blocks)")
LimitOpt = typer.Option(None, "--limit", help="A seeded random sample of at most N configurations (plus the "
                        "seed and uniform references)")
SampleSeedOpt = typer.Option(0, "--sample-seed", help="Random seed of --limit's sample")
MaxParamsOpt = typer.Option(None, "--max-params", help="Only configurations with at most this many parameters")
MaxMacsOpt = typer.Option(None, "--max-macs", help="Only configurations with at most this many multiply-accumulates")
DynamicBatchOpt = typer.Option(False, "--dynamic-batch", help="Export ONNX with a dynamic batch axis")
WeightsOpt = typer.Option(None, "--weights", help="Checkpoint path, or a torchvision weight name (online only)")
SegmentsOpt = typer.Option("stages", "--segments", help="'stages' or a number N of equal segments")
RoundOpt = typer.Option(8, "--round-to", help="Round pruned widths to this channel multiple")
ClassesOpt = typer.Option(None, "--num-classes", help="Classes of the seed's classifier")
InputOpt = typer.Option(None, "--input-size", help="Input side in pixels (default: the seed's)")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout")
TraceTimeoutOpt = typer.Option(None, "--trace-timeout", help="Seconds each trace of the seed may take (default: "
                               "30 under 10 M parameters, else 180; 0: no bound); a slow one stops with the "
                               "stage and the module or channel group it was in")
CalibImagesOpt = typer.Option(512, "--calib-images", help="Training images for reconstruction and int8 "
                              "calibration")
ReconstructOpt = typer.Option(True, "--reconstruct/--no-reconstruct", help="Re-solve each pruned network's "
                              "weights against the seed on --calib-images (needs --data)")
ResidualOpt = typer.Option(True, "--residual-solve/--no-residual-solve", help="With --reconstruct: fit each "
                           "convolution that writes into a residual add to the seed's sum there minus the pruned "
                           "network's own shortcut, so it absorbs the stream's drift")
RefineOpt = typer.Option(60.0, "--refine-seconds", help="With --reconstruct: after the solve, distil the network "
                         "from the seed on the same unlabeled calibration images for up to 50 steps within this "
                         "many seconds (0: off)")
BuildRefineOpt = typer.Option(BuildConfig().refine_seconds, "--refine-seconds", help="With --reconstruct: before "
                              "each pruned network's fine-tune, distil it from the seed on the calibration images "
                              "for up to 50 steps within this many seconds, paid from its --train-minutes share "
                              "(0: off)")
CriterionOpt = typer.Option("l1", "--criterion", help="Which channels a pruned layer keeps: l1 (largest filters), "
                            "taylor or activation (both measured on --data)")
