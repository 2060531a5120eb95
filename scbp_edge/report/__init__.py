"""Reports: report.json (the source of truth), report.md, a self-contained report.html, plots.

Built from the run store's records only; imports no backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scbp_edge.rank import Constraints, Selection, flops_disagreement, pareto_front, select
from scbp_edge.rank.points import points_of
from scbp_edge.store import RunStore


def _measured_with(measured: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Runtime, GPU, power mode, clock pinning...: every value seen across the measurements."""
    seen: dict[str, list[Any]] = {}
    for m in measured:
        for k, v in (m.get("info") or {}).items():
            if v not in seen.setdefault(k, []):
                seen[k].append(v)
    return seen


PROXY_FRONT = (("proxy_accuracy", "max"), ("p50_ms", "min"), ("memory_mb", "min"), ("size_mb", "min"),
               ("energy_mj", "min"))


def _selection(pts: list[dict[str, Any]], cons: Constraints, real: bool) -> tuple[Selection, str]:
    """The shipped model: among the fine-tuned candidates (test accuracy) where training happened, else by proxy."""
    seed = next((p for p in pts if p["is_seed"]), None)
    trained = [p for p in pts if p["test_accuracy"] is not None]
    if seed is not None and seed["test_accuracy"] is not None and len(trained) > 1:
        tpts = [dict(p, accuracy=p["test_accuracy"]) for p in trained]
        sel = select(tpts, pareto_front(tpts), cons, seed["test_accuracy"], True)
        sel.reason += " (test accuracy after fine-tuning, against the seed fine-tuned alike)"
        return sel, "test"
    ppts = [dict(p, accuracy=p["proxy_accuracy"] if p["proxy_accuracy"] is not None else float("-inf"))
            for p in pts]
    return select(ppts, pareto_front(pts, PROXY_FRONT), cons, seed["proxy_accuracy"] if seed else None, real), "proxy"


def _budget_result(pts: list[dict[str, Any]], cons: Constraints, sel: Selection, kind: str) -> dict[str, Any] | None:
    """For a latency budget: what was best inside it and how far it fell from the seed."""
    if not cons.has_latency_budget:
        return None
    seed = next((p for p in pts if p["is_seed"]), None)
    best = next((p for p in pts if p["id"] == sel.id), None)
    key = "test_accuracy" if kind == "test" else "proxy_accuracy"
    return {"max_latency_ms": cons.max_latency_ms, "speedup": cons.speedup, "best": sel.id,
            "inside": len(sel.feasible), "accuracy_kind": kind,
            "best_speedup": best["speedup"] if best else None, "best_accuracy": best[key] if best else None,
            "seed_accuracy": seed[key] if seed else None,
            "accuracy_delta": best[key] - seed[key] if best and seed and best[key] is not None
            and seed[key] is not None else None}


def _training_state(store: RunStore) -> dict[str, Any] | None:
    t = store.meta_or("training")
    if t is None:
        return None
    done = set(t.get("done", []))
    return {**t, "interrupted": t.get("state") != "done", "trained": len(done), "wanted": len(t.get("networks", []))}


def build_report(store: RunStore) -> dict[str, Any]:
    """The report as one JSON-serialisable dict (from whatever rows can be read, if the database is damaged)."""
    cfg = store.meta_or("config", {})
    cands, unreadable = store.salvage()
    pts = points_of(cands)
    front = pareto_front(pts, PROXY_FRONT)
    seed_pt = next((p for p in pts if p["is_seed"]), None)
    kinds = {c["accuracy"]["kind"] for c in cands if c.get("accuracy")}
    real = bool(kinds) and not any("stand-in" in k for k in kinds)
    cons = Constraints(**cfg.get("constraints", {}))
    sel, sel_kind = _selection(pts, cons, real)
    measured = [c["measurement"] for c in cands if c["status"] == "measured"]
    energy_reasons = sorted({m["energy"]["reason"] for m in measured if m["energy"]["reason"]})
    energy_sources = sorted({m["energy"]["source"] for m in measured if m["energy"]["mj_per_inference"] is not None})
    return {
        "run": {"created": store.meta_or("created"), "config": cfg, "target": store.meta_or("target"),
                "runtime": store.meta_or("runtime"), "precisions": store.meta_or("precisions", []),
                "notes": store.meta_or("notes", []), "seed": store.meta_or("seed"),
                "segmentation": store.meta_or("segmentation")},
        "fingerprints": store.meta_or("fingerprints", {}),
        "data": store.meta_or("data"),
        "accuracy_kind": sorted(kinds),
        "counts": {s: sum(c["status"] == s for c in cands) for s in ("pending", "exported", "measured", "failed")},
        "unreadable_rows": unreadable,
        "candidates": cands,
        "points": pts,
        "front": front,
        "selection": dict(sel.to_dict(), accuracy_kind=sel_kind),
        "seed_point": seed_pt,
        "trained": _trained_summary(pts),
        "training": _training_state(store),
        "budget_result": _budget_result(pts, cons, sel, sel_kind),
        "budget": store.meta_or("budget"),
        "classifier_replaced": store.meta_or("classifier_replaced"),
        "stage_seconds": store.meta_or("stage_seconds", {}),
        "weights": _weights_summary(cands, cfg, store.meta_or("teacher")),
        "flops_vs_measured": flops_disagreement(pts),
        "energy_note": energy_reasons,
        "energy_sources": energy_sources,
        "measured_with": _measured_with(measured),
        "failed": [{"id": c["id"], "stage": c["stage"], "error": c["error"]} for c in cands if c["status"] == "failed"],
    }


def write_reports(run_dir: Path, store: RunStore) -> dict[str, Any]:
    """Write report.json, report.md, report.html and plots into ``run_dir``."""
    from scbp_edge.report.card import summary_card
    from scbp_edge.report.plots import write_plots
    from scbp_edge.report.render import render_html, render_markdown

    rep = build_report(store)
    rep["card"] = summary_card(rep, str(run_dir))
    (run_dir / "report.json").write_text(json.dumps(rep, indent=2, default=str))
    plots = write_plots(run_dir, rep)
    (run_dir / "report.md").write_text(render_markdown(rep, plots, str(run_dir)))
    (run_dir / "report.html").write_text(render_html(rep, plots, str(run_dir)))
    return rep


def _weights_summary(cands: list[dict[str, Any]], cfg: dict[str, Any], teacher: Any) -> dict[str, Any]:
    """How the candidates' weights were made: channel criterion, reconstruction (what it did, where it could not)."""
    recs = {c["network"]: (c.get("accuracy") or {}).get("reconstruction") for c in cands}
    recs = {n: r for n, r in recs.items() if r}
    done = [r for r in recs.values() if r["applied"]]
    kept: dict[str, str] = {}
    for r in done:
        kept.update(r.get("kept_l1") or {})
    skipped = sorted({r["reason"] for r in recs.values() if not r["applied"] and r["reason"] != "nothing pruned"})
    secs = sorted(r["seconds"] for r in done)
    return {"criterion": cfg.get("criterion", "l1"), "reconstruct": cfg.get("reconstruct", True),
            "reconstructed": len(done), "skipped": skipped, "images": max((r["images"] for r in done), default=0),
            "median_seconds": secs[len(secs) // 2] if secs else None, "kept_l1": kept,
            "strong_ridge": sorted({n for r in done for n in r.get("strong_ridge") or []}), "teacher": teacher}


def _trained_summary(pts: list[dict[str, Any]]) -> dict[str, Any]:
    """Trained candidates vs the equally trained seed, and how well the proxy predicted them."""
    rows = [p for p in pts if p.get("test_accuracy") is not None]
    seed = next((p for p in rows if p["is_seed"]), None)
    out: dict[str, Any] = {"seed_test_accuracy": seed["test_accuracy"] if seed else None, "rows": [],
                           "proxy_spearman": None}
    for p in sorted(rows, key=lambda p: p["p50_ms"]):
        out["rows"].append({
            "id": p["id"], "precision": p["precision"], "proxy_accuracy": p["proxy_accuracy"],
            "test_accuracy": p["test_accuracy"], "p50_ms": p["p50_ms"],
            "params": p["params"], "speedup_vs_seed": p["speedup"],
            "params_vs_seed": p["params"] / seed["params"] if seed else None,
            "accuracy_delta_vs_seed": p["test_accuracy"] - seed["test_accuracy"] if seed else None,
        })
    ranked = [p for p in rows if p["proxy_accuracy"] is not None]
    if len(ranked) >= 3:
        from scipy.stats import spearmanr

        rho = spearmanr([p["proxy_accuracy"] for p in ranked], [p["test_accuracy"] for p in ranked]).statistic
        out["proxy_spearman"] = None if rho != rho else float(rho)
    return out
