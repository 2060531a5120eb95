"""The research surface the benchmarks are written against: the product's own parts, under one name.

Benchmarks measure what the product does, so they call its own derive,
proxy, training, export, measurement and ranking code, never copies of it;
they import it from here (and from ``scbp_edge.api``) only, and a test keeps
it so (tests/test_layering.py). A part a benchmark needs is added here, so
what research code relies on is one visible list rather than scattered
imports of internals. Nothing here is re-implemented: each name is the
product's own object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scbp_edge import defaults
from scbp_edge.accuracy import (
    WARMUP,
    adapt_bn,
    better_teacher,
    bf16_supported,
    distill_score,
    evaluate,
    evaluate_onnx,
    fit,
    train,
)
from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.data import read_split, split_val
from scbp_edge.data.digits import load_digits_split
from scbp_edge.derive import model_cost
from scbp_edge.derive import reconstruct as reconstruct_module
from scbp_edge.derive.io import load_derived, save_derived
from scbp_edge.derive.tp_adapter import magnitude_prune
from scbp_edge.errors import ScbpError
from scbp_edge.executors import LocalExecutor, RayExecutor
from scbp_edge.export.int8 import quantize_int8
from scbp_edge.export.onnx import export_onnx
from scbp_edge.measure import measure_items, profile_one
from scbp_edge.package import container
from scbp_edge.pipeline.config import BuildConfig
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.rank import Constraints, kendall_tau, pareto_front, within_latency_budget
from scbp_edge.rank.budget import BudgetPoint, fit_latency, hypervolume, predict, run_budget
from scbp_edge.rank.pick import pick_for_training
from scbp_edge.records.task import PROXY_STEPS, DeriveContext, DerivedNetwork, NetworkJob, ProxyData
from scbp_edge.report import typed as typed_report
from scbp_edge.report.sections.candidates import speed_ranks
from scbp_edge.runtimes import get_runtime, runtime_for
from scbp_edge.runtimes.tensorrt import TensorRT
from scbp_edge.runtimes.torch_cuda import TorchCuda, TorchSession
from scbp_edge.seeds import load_seed
from scbp_edge.space import SegmentProbe, ratio_sets_from_sensitivity
from scbp_edge.targets import load_target
from scbp_edge.tasks import evaluate_network, proxy_accuracy, seed_payload

__all__ = [
    "PROXY_STEPS", "WARMUP", "BudgetPoint", "BuildConfig", "Constraints", "DeriveContext", "DerivedNetwork", "Item",
    "LocalExecutor", "NetworkJob",
    "ProxyData", "RayExecutor", "ScbpError", "SeedOptions", "SegmentProbe", "TensorRT", "TorchCuda", "TorchSession",
    "Workbench", "adapt_bn", "better_teacher", "bf16_supported", "container", "defaults", "distill_score", "evaluate",
    "evaluate_network",
    "evaluate_onnx", "export_onnx", "fit", "fit_latency", "get_runtime", "hypervolume", "kendall_tau", "load_derived",
    "load_digits_split", "load_seed", "load_target", "magnitude_prune", "measure_items", "model_cost",
    "pareto_front", "pick_for_training", "predict", "profile_interleaved", "profile_one", "proxy_accuracy",
    "quantize_int8", "ratio_sets_from_sensitivity", "read_split", "reconstruct_module", "run_budget", "runtime_for",
    "save_derived", "seed_payload", "speed_ranks", "split_val", "train", "typed_report", "within_latency_budget",
    "write_results",
]


def write_results(folder: Path, name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """A benchmark's results as ``name.json`` and ``name.md`` in ``folder``: each written whole, then moved into place.

    A run killed while writing leaves the previous pair, never half a file; the JSON and the
    Markdown come from the same run. Values JSON does not know (paths, dates) are written as text.
    """
    import json

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in ((".json", json.dumps(data, indent=2, default=str) + "\n"), (".md", markdown)):
        path = folder / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(text)
        tmp.replace(path)
        out.append(path)
    return out[0], out[1]
