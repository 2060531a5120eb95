"""Reports: report.json (the source of truth), report.md, a self-contained report.html, plots.

Built from the run store's records only; imports no backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scbp_edge.rank import Constraints, flops_disagreement, pareto_front, select
from scbp_edge.store import RunStore


def _measured_with(measured: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Runtime, GPU, power mode, clock pinning...: every value seen across the measurements."""
    seen: dict[str, list[Any]] = {}
    for m in measured:
        for k, v in (m.get("info") or {}).items():
            if v not in seen.setdefault(k, []):
                seen[k].append(v)
    return seen


def _memory(m: dict[str, Any]) -> float | None:
    """The memory that limits the target: the GPU's where measured, else the host process's."""
    for key in ("device_memory_mb", "memory_mb", "peak_rss_mb"):
        if m.get(key) is not None:
            return m[key]
    return None


def _points(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pts = []
    for c in cands:
        if c["status"] != "measured":
            continue
        m = c["measurement"]
        pts.append({
            "id": c["id"], "ratios": c["ratios"], "reference": c["reference"],
            "accuracy": c["accuracy"]["value"], "p50_ms": m["latency"]["p50_ms"], "p90_ms": m["latency"]["p90_ms"],
            "p99_ms": m["latency"]["p99_ms"], "cv": m["latency"]["cv"],
            "memory_mb": _memory(m), "device_memory_mb": m.get("device_memory_mb"),
            "size_mb": m["model_size_mb"], "params": c["static"]["params"], "macs": c["static"]["macs"],
            "energy_mj": m["energy"]["mj_per_inference"],
            "test_accuracy": (c.get("trained") or {}).get("test_accuracy"),
            "round_p50_ms": m["latency"].get("round_p50_ms", []),
        })
    return pts


def build_report(store: RunStore) -> dict[str, Any]:
    """The report as one JSON-serialisable dict."""
    cfg = store.get_meta("config", {})
    cands = store.candidates()
    pts = _points(cands)
    front = pareto_front(pts)
    seed_pt = next((p for p in pts if p["reference"] == "seed"), None)
    kinds = {c["accuracy"]["kind"] for c in cands if c.get("accuracy")}
    real = bool(kinds) and not any("stand-in" in k for k in kinds)
    cons = Constraints(**cfg.get("constraints", {}))
    sel = select(pts, front, cons, seed_pt["accuracy"] if seed_pt else None, real)
    trained = _trained_summary(pts)
    if trained["seed_test_accuracy"] is not None and len(trained["rows"]) > 1:
        tpts = [dict(p, accuracy=p["test_accuracy"]) for p in pts if p["test_accuracy"] is not None]
        sel = select(tpts, pareto_front(tpts), cons, trained["seed_test_accuracy"], True)
        sel.reason += " (after one-shot training: test accuracy vs the seed fine-tuned with the same budget)"
    measured = [c["measurement"] for c in cands if c["status"] == "measured"]
    energy_reasons = sorted({m["energy"]["reason"] for m in measured if m["energy"]["reason"]})
    energy_sources = sorted({m["energy"]["source"] for m in measured if m["energy"]["mj_per_inference"] is not None})
    return {
        "run": {"created": store.get_meta("created"), "config": cfg, "target": store.get_meta("target"),
                "seed": store.get_meta("seed"), "segmentation": store.get_meta("segmentation")},
        "accuracy_kind": sorted(kinds),
        "counts": {s: sum(c["status"] == s for c in cands) for s in ("pending", "exported", "measured", "failed")},
        "candidates": cands,
        "points": pts,
        "front": front,
        "selection": sel.to_dict(),
        "seed_point": seed_pt,
        "trained": trained,
        "budget": store.get_meta("budget"),
        "classifier_replaced": store.get_meta("classifier_replaced"),
        "flops_vs_measured": flops_disagreement(pts),
        "energy_note": energy_reasons,
        "energy_sources": energy_sources,
        "measured_with": _measured_with(measured),
        "failed": [{"id": c["id"], "stage": c["stage"], "error": c["error"]} for c in cands if c["status"] == "failed"],
    }


def write_reports(run_dir: Path, store: RunStore) -> dict[str, Any]:
    """Write report.json, report.md, report.html and plots into ``run_dir``."""
    from scbp_edge.report.plots import write_plots
    from scbp_edge.report.render import render_html, render_markdown

    rep = build_report(store)
    (run_dir / "report.json").write_text(json.dumps(rep, indent=2, default=str))
    plots = write_plots(run_dir, rep)
    (run_dir / "report.md").write_text(render_markdown(rep, plots))
    (run_dir / "report.html").write_text(render_html(rep, plots))
    return rep


def _trained_summary(pts: list[dict[str, Any]]) -> dict[str, Any]:
    """Trained candidates vs the equally trained seed, and how well the proxy predicted them."""
    rows = [p for p in pts if p.get("test_accuracy") is not None]
    seed = next((p for p in rows if p["reference"] == "seed"), None)
    out: dict[str, Any] = {"seed_test_accuracy": seed["test_accuracy"] if seed else None, "rows": [],
                           "proxy_spearman": None}
    for p in sorted(rows, key=lambda p: p["p50_ms"]):
        out["rows"].append({
            "id": p["id"], "proxy_accuracy": p["accuracy"], "test_accuracy": p["test_accuracy"], "p50_ms": p["p50_ms"],
            "params": p["params"], "speedup_vs_seed": seed["p50_ms"] / p["p50_ms"] if seed else None,
            "params_vs_seed": p["params"] / seed["params"] if seed else None,
            "accuracy_delta_vs_seed": p["test_accuracy"] - seed["test_accuracy"] if seed else None,
        })
    if len(rows) >= 3:
        from scipy.stats import spearmanr

        rho = spearmanr([p["accuracy"] for p in rows], [p["test_accuracy"] for p in rows]).statistic
        out["proxy_spearman"] = None if rho != rho else float(rho)
    return out
