"""Reports: report.json (the source of truth), report.md, a self-contained report.html, plots.

Built from the run store's records only; imports no backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scbp_edge.rank import Constraints, flops_disagreement, pareto_front, select
from scbp_edge.store import RunStore


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
            "memory_mb": m["memory_mb"] if m["memory_mb"] is not None else m["peak_rss_mb"],
            "size_mb": m["model_size_mb"], "params": c["static"]["params"], "macs": c["static"]["macs"],
            "energy_mj": m["energy"]["mj_per_inference"],
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
    energy_reasons = sorted({c["measurement"]["energy"]["reason"] for c in cands
                             if c["status"] == "measured" and c["measurement"]["energy"]["reason"]})
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
        "flops_vs_measured": flops_disagreement(pts),
        "energy_note": energy_reasons,
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
