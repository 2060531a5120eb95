"""``compare``: tell a real regression from noise between two report.json files.

Latency is compared as each candidate's paired speed-up against the seed
measured in the same rounds of the same run, so drift of the whole machine
between the two runs cancels.  A latency metric regresses only if it is
worse by more than ``max_regression`` (the effect size) AND Welch's one-sided
t-test on the per-round log speed-ups rejects "no slower" after Holm's
correction over every latency comparison made (so 90 comparisons do not
fire by chance).  Welch's test can decide with 3 rounds a side, the fewest
any target uses; an exact rank test cannot (its smallest p is 0.05).  Metrics
without a spread (size, params, accuracy, memory, energy) go by the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scbp_edge.errors import RecordError, RunError
from scbp_edge.records import RankingPoint, Report

ALPHA = 0.05
# metric -> direction of "better"; latency metrics are compared through paired speed-ups
TRACKED = {"p50_ms": "min", "p90_ms": "min", "memory_mb": "min", "size_mb": "min", "accuracy": "max",
           "energy_mj": "min"}
FINGERPRINTS = ("weights_sha256", "data", "classes", "target", "precisions")


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
    p: float | None = None  # Holm-adjusted, latency metrics only


def as_report(name: str, data: Any) -> Report:
    """A parsed report.json as its record, or one line saying what is wrong with it (``name``: baseline or current)."""
    if not isinstance(data, dict):
        raise RunError(f"the {name} is not a scbp-edge report.json (not an object); pass a run's report.json")
    try:
        return Report.from_json(data)
    except RecordError as exc:
        raise RunError(f"the {name} report.json does not fit ({exc}); pass an unmodified report.json of a run, "
                       "or rewrite it with scbp-edge report RUN_DIR --write") from None


def check_comparable(baseline: Report, current: Report, force: bool) -> None:
    """Refuse reports of different weights, data, classes or targets (their 'regressions' would be bogus)."""
    if force:
        return
    a, b = baseline.fingerprints, current.fingerprints
    differ = [k for k in FINGERPRINTS if k in a and k in b and a[k] != b[k]]
    if differ:
        raise RunError(f"the runs are not comparable: their {', '.join(differ)} differ; compare runs of the same "
                       "seed weights, data and target, or pass --force")


def _log_speedups(p: RankingPoint) -> list[float]:
    rounds = p.paired.rounds if p.paired else []
    return [math.log(r) for r in rounds if r and r > 0]


def _welch_p(base: list[float], cur: list[float]) -> float | None:
    """One-sided p that the current log speed-ups are not below the baseline's (None: too few rounds)."""
    if len(base) < 2 or len(cur) < 2:
        return None
    from scipy.stats import ttest_ind

    res = ttest_ind(base, cur, equal_var=False, alternative="greater")
    p = float(res.pvalue)
    return 0.0 if math.isnan(p) and sum(base) / len(base) > sum(cur) / len(cur) else (1.0 if math.isnan(p) else p)


def _holm(pvalues: dict[int, float]) -> dict[int, float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over every latency comparison)."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def compare(baseline: Report, current: Report, max_regression: float) -> list[Delta]:
    """Deltas for every tracked metric of every candidate measured in both reports."""
    base = {p.id: p for p in baseline.points}
    out: list[Delta] = []
    tests: dict[int, float] = {}
    for p in current.points:
        b = base.get(p.id)
        if b is None:
            continue
        for metric, better in TRACKED.items():
            bv, cv = getattr(b, metric), getattr(p, metric)
            if bv is None or cv is None or bv == 0:
                continue
            change = (cv - bv) / abs(bv) if better == "min" else (bv - cv) / abs(bv)
            if metric in ("p50_ms", "p90_ms") and b.speedup and p.speedup:
                change = b.speedup / p.speedup - 1  # against the seed of each run: machine drift cancels
            out.append(_delta(p.id, metric, bv, cv, change, max_regression))
            if out[-1].verdict == "regression" and metric in ("p50_ms", "p90_ms"):
                pv = _welch_p(_log_speedups(b), _log_speedups(p))
                if pv is not None:
                    tests[len(out) - 1] = pv
    for i, adj in _holm(tests).items():
        d = out[i]
        d.p = adj
        if adj >= ALPHA:
            d.verdict, d.why = "noise", f"{d.why}, but within the rounds' spread (Holm-adjusted p={adj:.3f})"
        else:
            d.why += f" (Welch p={adj:.2g}, Holm-adjusted over {len(tests)} latency tests)"
    return out


def _delta(cid: str, metric: str, bv: float, cv: float, change: float, max_regression: float) -> Delta:
    """The verdict by the threshold alone; latency regressions are then tested against the rounds' spread."""
    if change == 0:
        return Delta(cid, metric, bv, cv, 0.0, "ok", "unchanged")
    if change <= -max_regression:
        return Delta(cid, metric, bv, cv, change, "improved", f"{-change:.1%} better")
    if change <= max_regression:
        return Delta(cid, metric, bv, cv, change, "ok", f"within {max_regression:.0%}")
    if metric in ("p50_ms", "p90_ms"):
        return Delta(cid, metric, bv, cv, change, "regression", f"{change:.1%} slower vs the seed")
    return Delta(cid, metric, bv, cv, change, "regression", f"{change:.1%} worse (no spread recorded: the "
                 "threshold decides)")
