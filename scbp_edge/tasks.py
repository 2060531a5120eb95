"""Per-candidate work units (proxy evaluation, one-shot training) that any executor can run.

Each task receives everything as plain data (seed spec + state dict, tensors)
and returns plain data (ONNX bytes, figures), so it runs the same in this
process or on a Ray worker on another machine; the driver writes files and the
SQLite store.  Expected failures come back as ``{"ok": False, ...}`` so that
executors retry only real crashes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from scbp_edge.errors import ScbpError

_BENCHES: dict[int, Any] = {}


def seed_payload(wb) -> dict[str, Any]:
    """What a worker needs to rebuild ``wb``: options, seed spec, weights."""
    from dataclasses import asdict

    return {"opts": asdict(wb.opts), "spec": wb.seed.spec.to_dict(), "state": wb.seed.model.state_dict()}


def _bench(payload: dict[str, Any]):
    key = hash((str(payload["opts"]), str(payload["spec"])))
    if key not in _BENCHES:  # one rebuild per worker process, not per task
        from scbp_edge.api import SeedOptions, Workbench
        from scbp_edge.seeds import Seed, SeedSpec, build_model

        spec = SeedSpec.from_dict(payload["spec"])
        model = build_model(spec)
        model.load_state_dict(payload["state"])
        _BENCHES[key] = Workbench(SeedOptions(**payload["opts"]), Seed(spec, model.eval()))
    return _BENCHES[key]


def _onnx(model, shape, dynamic_batch: bool) -> dict[str, Any]:
    from scbp_edge.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        info = export_onnx(model, shape, Path(tmp) / "m.onnx", dynamic_batch=dynamic_batch)
        return {"info": info.to_dict(), "bytes": (Path(tmp) / "m.onnx").read_bytes()}


def evaluate_candidate(payload: dict[str, Any], data: dict[str, Any] | None, ratios: list[float],
                       dynamic_batch: bool, seed_params: int, keep_model: bool = False) -> dict[str, Any]:
    """Derive, export and (with data) score one candidate by the adaptive-BN proxy.

    ``keep_model`` also returns the weights (for backends that time the PyTorch model).
    """
    stage = "derive"
    try:
        wb = _bench(payload)
        cand, model = wb.candidate(ratios)
        stage = "export"
        onnx = _onnx(model, wb.seed.spec.input_shape, dynamic_batch)
        stage = "accuracy"
        seg_macs = segment_macs(wb, model)
        res = {"ok": True, "onnx": onnx, "accuracy": proxy_accuracy(model, data, cand.params or 0, seed_params),
               "segment_macs": seg_macs,
               "static": {"params": cand.params, "macs": cand.macs, "size_bytes": cand.size_bytes}}
        if keep_model:
            res.update(state=model.state_dict(), keep=wb.deriver.plan(ratios), ignored=wb.deriver.ignored,
                       ratios=list(ratios))
        return res
    except ScbpError as exc:
        return {"ok": False, "stage": stage, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one candidate's crash must not end the build
        return {"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def segment_macs(wb, model) -> list[int]:
    """MACs of each segment of a derived model (features of the latency predictor)."""
    from scbp_edge.analysis import trace_layers

    out = [0] * wb.num_segments
    for rec in trace_layers(model, wb.seed.spec.input_shape):
        seg = wb.segmentation.segment_of(rec.name)
        if seg is not None:
            out[seg] += rec.macs
    return out


def proxy_accuracy(model, data: dict[str, Any] | None, params: int, seed_params: int) -> dict[str, Any]:
    if data is None:
        return {"value": 100.0 * params / max(1, seed_params), "kind": "params-retained % (stand-in, no data)"}
    from scbp_edge.accuracy import adapt_bn, evaluate

    stale = evaluate(model, data["val_x"], data["val_y"])
    adapt_bn(model, data["bn_x"])
    return {"value": evaluate(model, data["val_x"], data["val_y"]),
            "kind": "proxy: adaptive-BN top-1 on validation split", "stale_bn": stale,
            "bn_images": len(data["bn_x"]), "val_images": len(data["val_x"]),
            "skipped_images": data["skipped"]}


def train_candidate(payload: dict[str, Any], train: dict[str, Any], ratios: list[float], epochs: int, lr: float,
                    init: str, distill: bool) -> dict[str, Any]:
    """One-shot fine-tune (or scratch training) of one configuration; test accuracy before and after."""
    from scbp_edge.accuracy import evaluate
    from scbp_edge.accuracy import train as fit

    wb = _bench(payload)
    _, model = wb.candidate(ratios)
    if init == "scratch":
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    before = evaluate(model, train["test_x"], train["test_y"])
    torch.manual_seed(0)
    model = fit(model, train["x"], train["y"], epochs=epochs, lr=lr, teacher=wb.seed.model if distill else None)
    return {"test_accuracy": evaluate(model, train["test_x"], train["test_y"]), "test_accuracy_before": before,
            "state": model.state_dict(), "onnx": _onnx(model, wb.seed.spec.input_shape, False),
            "keep": wb.deriver.plan(ratios), "ignored": wb.deriver.ignored, "train_images": len(train["x"]),
            "test_images": len(train["test_x"])}
