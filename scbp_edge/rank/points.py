"""Measured candidates as flat points: the one view that ranking, training picks and reports share."""

from __future__ import annotations

from typing import Any


def memory_of(m: dict[str, Any]) -> float | None:
    """The memory that limits the target: the GPU's where measured, else the host process's."""
    for key in ("device_memory_mb", "memory_mb", "peak_rss_mb"):
        if m.get(key) is not None:
            return m[key]
    return None


def reference_precision(cands: list[dict[str, Any]]) -> str | None:
    """The precision the seed is the reference at: the first one searched (fp32 on a CPU, fp16 on a Nano).

    A build stores each network's candidates in the order of its precisions, so it is the first seed row's.
    """
    seeds = sorted((c for c in cands if c["reference"] == "seed"), key=lambda c: c["position"])
    return seeds[0]["precision"] if seeds else None


def points_of(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per measured candidate, with its speed-up against the reference seed of the same run.

    ``accuracy`` is the best accuracy the candidate has: its test accuracy
    after fine-tuning where it was trained (``accuracy_kind`` "test"), else
    its proxy ("proxy").
    """
    ref_prec = reference_precision(cands)
    pts = []
    for c in cands:
        if c["status"] != "measured":
            continue
        m, lat = c["measurement"], c["measurement"]["latency"]
        proxy = (c["accuracy"] or {}).get("value")
        test = (c.get("trained") or {}).get("test_accuracy")
        pts.append({
            "id": c["id"], "network": c["network"], "precision": c["precision"], "ratios": c["ratios"],
            "reference": c["reference"], "is_seed": c["reference"] == "seed" and c["precision"] == ref_prec,
            "accuracy": test if test is not None else proxy, "accuracy_kind": "test" if test is not None else "proxy",
            "proxy_accuracy": proxy, "test_accuracy": test,
            "p50_ms": lat["p50_ms"], "p90_ms": lat["p90_ms"], "p99_ms": lat["p99_ms"], "cv": lat["cv"],
            "p50_interval_ms": lat.get("p50_interval_ms"), "round_p50_ms": lat.get("round_p50_ms", []),
            "noisy": bool(lat.get("noisy")), "rounds_measured": lat.get("rounds_measured"),
            "rounds_set_aside": lat.get("rounds_set_aside", 0), "slowest_round": lat.get("slowest_round"),
            "memory_mb": memory_of(m), "device_memory_mb": m.get("device_memory_mb"), "size_mb": m["model_size_mb"],
            "params": c["static"]["params"], "macs": c["static"]["macs"], "energy_mj": m["energy"]["mj_per_inference"],
            "paired": m.get("paired"), "reconstruction": (c["accuracy"] or {}).get("reconstruction"),
            "test_images": (c.get("trained") or {}).get("test_images"),
            "_correct": (c.get("trained") or {}).get("test_correct"),
            "proxy_images": (c["accuracy"] or {}).get("val_images"),
            "batched": m.get("batched") or [],
        })
    seed = next((p for p in pts if p["is_seed"]), None)
    _with_uncertainty(pts, seed)
    for p in pts:
        paired = p["paired"] or {}
        if paired.get("speedup") is not None:
            p["speedup"] = paired["speedup"]  # candidate vs seed within the same interleaved rounds
        else:
            p["speedup"] = seed["p50_ms"] / p["p50_ms"] if seed and p["p50_ms"] else None
    return pts


def _with_uncertainty(pts: list[dict[str, Any]], seed: dict[str, Any] | None) -> None:
    """Each accuracy's 95 % interval, and each fine-tuned candidate paired with the seed on the same test images."""
    from scbp_edge.rank.stats import paired, unpack, wilson

    ref = None
    if seed is not None and seed["_correct"] and seed["test_images"]:
        ref = unpack(seed["_correct"], seed["test_images"])
    for p in pts:
        n, acc = p["test_images"], p["test_accuracy"]
        p["test_interval"] = wilson(round(acc * n / 100), n) if n and acc is not None else None
        pn, pacc = p["proxy_images"], p["proxy_accuracy"]
        p["proxy_interval"] = wilson(round(pacc * pn / 100), pn) if pn and pacc is not None else None
        vec = p.pop("_correct")
        p["vs_seed"] = None
        if ref is not None and vec and n == len(ref) and not p["is_seed"]:
            p["vs_seed"] = paired(ref, unpack(vec, n)).to_dict()
