"""Rank: Pareto front on measured cost, constraints, selection, and FLOPs-vs-measured disagreement.

Works on plain dicts/records only: no backend, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# (key, direction): accuracy is maximised, costs minimised.  Energy counts where it was
# measured (pareto_front leaves out an objective no point has).
OBJECTIVES: tuple[tuple[str, str], ...] = (
    ("accuracy", "max"), ("p50_ms", "min"), ("memory_mb", "min"), ("size_mb", "min"), ("energy_mj", "min"),
)


def dominates(a: dict[str, float], b: dict[str, float], objectives=OBJECTIVES) -> bool:
    """True if ``a`` is no worse than ``b`` on every objective and better on one."""
    better = False
    for key, direction in objectives:
        va, vb = a[key], b[key]
        if direction == "max":
            va, vb = -va, -vb
        if va > vb:
            return False
        if va < vb:
            better = True
    return better


def pareto_front(points: Sequence[dict[str, Any]], objectives=OBJECTIVES) -> list[str]:
    """Ids of the non-dominated points (each point has ``id`` and the objective keys).

    An objective no point has (e.g. host memory where only the device's is
    known) is left out rather than emptying the front.
    """
    objectives = tuple(o for o in objectives if any(p.get(o[0]) is not None for p in points))
    usable = [p for p in points if all(p.get(k) is not None for k, _ in objectives)]
    return [p["id"] for p in usable if not any(dominates(q, p, objectives) for q in usable if q is not p)]


@dataclass
class Constraints:
    """Hard limits; None means unconstrained."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float = 1.0
    max_energy_mj: float | None = None  # per inference; a candidate without a measured energy fails it

    def admits(self, p: dict[str, Any]) -> bool:
        checks = (("p50_ms", self.max_latency_ms), ("memory_mb", self.max_memory_mb), ("size_mb", self.max_size_mb),
                  ("energy_mj", self.max_energy_mj))
        return all(lim is None or (p.get(k) is not None and p[k] <= lim) for k, lim in checks)


@dataclass
class Selection:
    """The chosen candidate and why."""

    id: str | None
    reason: str
    feasible: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select(points: Sequence[dict[str, Any]], front: Sequence[str], cons: Constraints, seed_accuracy: float | None,
           accuracy_is_real: bool) -> Selection:
    """Fastest front member meeting the constraints (and, with real accuracy, within the allowed drop)."""
    feasible = [p for p in points if p["id"] in front and cons.admits(p)]
    if accuracy_is_real and seed_accuracy is not None:
        feasible = [p for p in feasible if p["accuracy"] >= seed_accuracy - cons.max_accuracy_drop]
        rule = f"fastest p50 on the front within {cons.max_accuracy_drop:g} pt of the seed's accuracy"
    else:
        rule = "fastest p50 on the front (accuracy is a stand-in, so no accuracy limit applies)"
    if not feasible:
        return Selection(None, f"no front candidate meets the constraints ({rule}); relax them")
    best = min(feasible, key=lambda p: (p["p50_ms"], -p["accuracy"]))
    return Selection(best["id"], rule, [p["id"] for p in feasible])


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall rank correlation (tau-b) of two paired lists; None if undefined."""
    if len(a) < 2:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return None if tau != tau else float(tau)  # NaN when a list is constant


def flops_disagreement(points: Sequence[dict[str, Any]], noise: float = 0.05) -> dict[str, Any]:
    """How the MACs ordering and the measured p50 ordering disagree.

    A pair is mis-ordered when MACs say one is cheaper but it measured slower
    by more than ``noise`` (relative), i.e. beyond run-to-run spread.
    """
    pts = [p for p in points if p.get("macs") is not None and p.get("p50_ms") is not None]
    tau = kendall_tau([p["macs"] for p in pts], [p["p50_ms"] for p in pts])
    pairs = []
    for i, a in enumerate(pts):
        for b in pts[i + 1 :]:
            lo, hi = (a, b) if a["macs"] < b["macs"] else (b, a)
            if lo["macs"] < hi["macs"] and lo["p50_ms"] > hi["p50_ms"] * (1 + noise):
                pairs.append({"fewer_macs": lo["id"], "but_slower_than": hi["id"],
                              "macs_ratio": lo["macs"] / hi["macs"], "latency_ratio": lo["p50_ms"] / hi["p50_ms"]})
    pairs.sort(key=lambda p: -p["latency_ratio"])
    misordered = sorted({p["fewer_macs"] for p in pairs})
    return {"kendall_tau": tau, "pairs": len(pts) * (len(pts) - 1) // 2, "misordered_pairs": pairs,
            "misordered_candidates": misordered, "noise_band": noise}


def pick_top_k(points: list[dict[str, Any]], k: int) -> list[str]:
    """K candidates spread (by latency) along the front of proxy accuracy vs measured p50.

    The seed is excluded (it is trained anyway as the reference), and so are
    front members whose proxy fell below half the seed's: collapsed networks
    that one short fine-tune cannot bring back.
    """
    front = set(pareto_front(points, (("accuracy", "max"), ("p50_ms", "min"))))
    seed = next((p["accuracy"] for p in points if p["reference"] == "seed"), None)
    floor = 0.5 * seed if seed is not None else float("-inf")
    on = sorted((p for p in points if p["id"] in front and p["reference"] != "seed" and p["accuracy"] >= floor),
                key=lambda p: p["p50_ms"])
    if len(on) <= k:
        return [p["id"] for p in on]
    step = (len(on) - 1) / max(1, k - 1)
    return list(dict.fromkeys(on[round(i * step)]["id"] for i in range(k)))
