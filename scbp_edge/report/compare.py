"""``compare``: tell a measured regression from noise between two report.json files.

Latency verdicts use each measurement's recorded spread: the per-round medians
of both runs.  A change counts as a regression only if it exceeds the
threshold AND the two sets of round medians are separated (every current
round slower than every baseline round, a one-sided Mann-Whitney test at
p < 0.05 where there are enough rounds); otherwise it is reported as noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# metric -> (direction of "better", uses round spread)
TRACKED = {"p50_ms": ("min", True), "p90_ms": ("min", True), "memory_mb": ("min", False),
           "size_mb": ("min", False), "accuracy": ("max", False), "energy_mj": ("min", False)}


@dataclass
class Delta:
    """One metric of one candidate, baseline vs current, and the verdict."""

    candidate: str
    metric: str
    baseline: float
    current: float
    change: float  # relative, positive = worse
    verdict: str  # "ok", "improved", "noise", "regression"
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _separated(base: list[float], cur: list[float]) -> tuple[bool, str]:
    if len(base) < 2 or len(cur) < 2:
        return True, "no round spread recorded; threshold alone decides"
    if len(base) >= 3 and len(cur) >= 3:
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(cur, base, alternative="greater").pvalue)
        return p < 0.05, f"Mann-Whitney p={p:.3f} over {len(base)}+{len(cur)} rounds"
    sep = min(cur) > max(base)
    return sep, "round ranges " + ("do not overlap" if sep else "overlap")


def compare(baseline: dict[str, Any], current: dict[str, Any], max_regression: float) -> list[Delta]:
    """Deltas for every tracked metric of every candidate measured in both reports."""
    base = {p["id"]: p for p in baseline.get("points", [])}
    out: list[Delta] = []
    for p in current.get("points", []):
        b = base.get(p["id"])
        if b is None:
            continue
        for metric, (better, spread) in TRACKED.items():
            bv, cv = b.get(metric), p.get(metric)
            if bv is None or cv is None or bv == 0:
                continue
            change = (cv - bv) / abs(bv) if better == "min" else (bv - cv) / abs(bv)
            if change <= -max_regression:
                verdict, why = "improved", f"{-change:.1%} better"
            elif change <= max_regression:
                verdict, why = "ok", f"within {max_regression:.0%}"
            elif spread:
                sep, how = _separated(b.get("round_p50_ms") or [], p.get("round_p50_ms") or [])
                verdict, why = ("regression", how) if sep else ("noise", how + ": within measured spread")
            else:
                verdict, why = "regression", f"{change:.1%} worse (deterministic metric)"
            out.append(Delta(p["id"], metric, bv, cv, change, verdict, why))
    return out
