"""Rank: Pareto front on measured cost, constraints, selection, and FLOPs-vs-measured disagreement.

Works on records only (:class:`scbp_edge.records.RankingPoint`, or any record with the objectives'
fields): no backend, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scbp_edge.records import Constraints, FlopsDisagreement, RankingPoint, Selection, Undecided

# (field, direction): accuracy is maximised, costs minimised.  Energy counts where it was
# measured (pareto_front leaves out an objective no point has).
OBJECTIVES: tuple[tuple[str, str], ...] = (
    ("accuracy", "max"), ("p50_ms", "min"), ("memory_mb", "min"), ("size_mb", "min"), ("energy_mj", "min"),
)


def dominates(a: Any, b: Any, objectives=OBJECTIVES) -> bool:
    """True if ``a`` is no worse than ``b`` on every objective (fields of the two records) and better on one."""
    better = False
    for key, direction in objectives:
        va, vb = getattr(a, key), getattr(b, key)
        if direction == "max":
            va, vb = -va, -vb
        if va > vb:
            return False
        if va < vb:
            better = True
    return better


def pareto_front(points: Sequence[Any], objectives=OBJECTIVES) -> list[str]:
    """Ids of the non-dominated points (records with an ``id`` and the objectives' fields).

    An objective no point has (e.g. host memory where only the device's is
    known) is left out rather than emptying the front.
    """
    objectives = tuple(o for o in objectives if any(getattr(p, o[0]) is not None for p in points))
    usable = [p for p in points if all(getattr(p, k) is not None for k, _ in objectives)]
    return [p.id for p in usable if not any(dominates(q, p, objectives) for q in usable if q is not p)]


def admits(cons: Constraints, p: RankingPoint) -> bool:
    """``p`` meets every hard limit of ``cons`` (a limit on a figure ``p`` lacks is not met)."""
    checks = ((p.p50_ms, cons.max_latency_ms), (p.memory_mb, cons.max_memory_mb), (p.size_mb, cons.max_size_mb),
              (p.energy_mj, cons.max_energy_mj))
    if cons.speedup is not None and (p.speedup is None or p.speedup < cons.speedup):
        return False
    return all(lim is None or (v is not None and v <= lim) for v, lim in checks)


def has_latency_budget(cons: Constraints) -> bool:
    """``cons`` limits latency, in ms or as a speed-up over the seed."""
    return cons.max_latency_ms is not None or cons.speedup is not None


def within_latency_budget(cons: Constraints, p: RankingPoint, slack: float = 1.0) -> bool:
    """``p`` meets the latency budget of ``cons`` (``slack`` > 1 widens it: the margin just outside)."""
    if cons.max_latency_ms is not None and p.p50_ms > cons.max_latency_ms * slack:
        return False
    return not (cons.speedup is not None and (p.speedup or 0) * slack < cons.speedup)


def check_constraints(cons: Constraints) -> None:
    """Raise ScbpError naming a limit of ``cons`` that cannot mean anything."""
    import math

    from scbp_edge.errors import ScbpError

    for flag, value in (("--max-latency-ms", cons.max_latency_ms), ("--max-memory-mb", cons.max_memory_mb),
                        ("--max-size-mb", cons.max_size_mb), ("--max-energy-mj", cons.max_energy_mj)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ScbpError(f"{flag} {value} must be a positive number")
    if not math.isfinite(cons.max_accuracy_drop) or cons.max_accuracy_drop < 0:
        raise ScbpError(f"--max-accuracy-drop {cons.max_accuracy_drop} must be 0 or more (points)")
    if cons.speedup is not None and (not math.isfinite(cons.speedup) or cons.speedup <= 0):
        raise ScbpError(f"--speedup {cons.speedup} must be a positive factor such as 1.5")


def speed_intervals(points: Sequence[RankingPoint]) -> dict[str, tuple[float, float]]:
    """Where each point's latency lies, as the interquartile range over its measurement rounds.

    Paired rounds (time relative to the seed timed in the same round) where
    every point has them, else the round p50s in ms.  Quartiles, not min-max:
    one slow round cannot stretch an interval into a tie with everything.
    """
    import numpy as np

    paired = all(p.paired is not None and len(p.paired.rounds or []) >= 3 for p in points)
    out = {}
    for p in points:
        rounds = [1.0 / r for r in p.paired.rounds if r > 0] if paired and p.paired else list(p.round_p50_ms)
        if len(rounds) >= 3:
            lo, hi = np.percentile(rounds, [25, 75])
            out[p.id] = (float(lo), float(hi))
    return out


def tie_groups(points: Sequence[RankingPoint]) -> list[int]:
    """For points sorted fastest first: the index of each one's group leader.

    A point ties with the leader of the current group when their intervals
    overlap; otherwise it leads a new group.  Ties are not inherited along a
    chain of overlapping neighbours: two points in one group both overlap its leader.
    """
    iv = speed_intervals(points)
    leaders: list[int] = []
    lead = None
    for i, p in enumerate(points):
        a, b = iv.get(p.id), iv.get(points[lead].id) if lead is not None else None
        if lead is None or a is None or b is None or a[0] > b[1] or b[0] > a[1]:
            lead = i
        leaders.append(lead)
    return leaders


def _ties(best: RankingPoint, pts: Sequence[RankingPoint]) -> list[RankingPoint]:
    """Points whose latency interval overlaps ``best``'s: the measurement cannot order them."""
    iv = speed_intervals(pts)
    if best.id not in iv:
        return [best]
    lo, hi = iv[best.id]
    return [p for p in pts if p.id in iv and iv[p.id][0] <= hi and lo <= iv[p.id][1]] or [best]


def _most_accurate(p: RankingPoint) -> tuple[float, float]:
    return (p.accuracy if p.accuracy is not None else float("-inf"), -p.p50_ms)


def select(points: Sequence[RankingPoint], front: Sequence[str], cons: Constraints, seed_accuracy: float | None,
           accuracy_is_real: bool) -> Selection:
    """The model to ship.

    With a latency budget (``--speedup`` or ``--max-latency-ms``): the most
    accurate candidate that meets it and every other limit.  Without one: the
    fastest front member within ``max_accuracy_drop`` of the seed, where
    candidates whose p50 intervals overlap the fastest one's count as ties and
    the most accurate of them wins (so noise cannot flip the choice).
    """
    real = accuracy_is_real and seed_accuracy is not None
    if has_latency_budget(cons):
        feasible = [p for p in points if admits(cons, p) and p.accuracy is not None]
        budget = " and ".join(x for x in (f"p50 <= {cons.max_latency_ms:g} ms" if cons.max_latency_ms else "",
                                          f">= {cons.speedup:g}x the seed's speed" if cons.speedup else "") if x)
        rule = f"most accurate candidate with {budget}"
        if not feasible:
            return Selection(None, f"no candidate meets the budget ({rule}{_unmet(points, cons)}); relax it or widen "
                             "--ratios", (), {})
        best = max(feasible, key=_most_accurate)
        return Selection(best.id, rule, tuple(p.id for p in feasible), {})
    feasible = [p for p in points if p.id in front and admits(cons, p)]
    undecided = _undecided(feasible, cons.max_accuracy_drop) if real else {}
    if real:
        floor = seed_accuracy - cons.max_accuracy_drop  # type: ignore[operator]  # real: the seed has an accuracy
        feasible = [p for p in feasible if p.accuracy is not None and p.accuracy >= floor]
        rule = f"fastest p50 on the front within {cons.max_accuracy_drop:g} pt of the seed's accuracy"
    else:
        rule = "fastest p50 on the front (accuracy is a stand-in, so no accuracy limit applies)"
    if not feasible:
        return Selection(None, f"no front candidate meets the constraints ({rule}{_unmet(points, cons)}); relax them",
                         (), undecided)
    fastest = min(feasible, key=lambda p: (p.p50_ms, -_most_accurate(p)[0]))
    tied = _ties(fastest, feasible)
    # a stand-in is no accuracy: without data, choose among the tied ones by nothing it would claim
    best = max(tied, key=_most_accurate) if real else fastest
    if len(tied) > 1:
        rule += (f"; {len(tied)} were tied within measurement noise, the most accurate of them won" if real else
                 f"; {len(tied)} were tied within measurement noise and, with no accuracy to tell them apart, the "
                 "fastest p50 won")
    faster = {p.id for p in points if p.p50_ms < best.p50_ms} | {best.id}
    return Selection(best.id, rule, tuple(p.id for p in feasible),
                     {k: v for k, v in undecided.items() if k in faster})


def _unmet(points: Sequence[RankingPoint], cons: Constraints) -> str:
    """Which hard limits excluded candidates: '; --max-energy-mj 5: 0 of 36 have a measured energy'."""
    out = []
    for flag, key, lim in (("--max-latency-ms", "p50_ms", cons.max_latency_ms),
                           ("--max-memory-mb", "memory_mb", cons.max_memory_mb),
                           ("--max-size-mb", "size_mb", cons.max_size_mb),
                           ("--max-energy-mj", "energy_mj", cons.max_energy_mj)):
        if lim is None:
            continue
        have = [v for v in (getattr(p, key) for p in points) if v is not None]
        if len(have) < len(points):
            out.append(f"{flag} {lim:g}: only {len(have)} of {len(points)} candidates have it measured")
        over = sum(v > lim for v in have)
        if over:
            out.append(f"{flag} {lim:g}: {over} of {len(have)} measured candidates exceed it")
    return "".join(f"; {x}" for x in out)


def _undecided(points: Sequence[RankingPoint], limit: float) -> dict[str, Undecided]:
    """Candidates whose paired drop's interval contains the limit, with the test images that would decide them."""
    from scbp_edge.rank.stats import PairedAccuracy, images_to_decide, undecided

    out = {}
    for p in points:
        if not p.vs_seed:
            continue
        pair = PairedAccuracy.from_dict(p.vs_seed)
        if undecided(pair, limit):
            out[p.id] = Undecided(pair.diff_pt, pair.interval_pt, pair.n, pair.diff_pt >= -limit,
                                  images_to_decide(pair, limit))
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall rank correlation (tau-b) of two paired lists; None if undefined.

    Counted over all pairs with numpy, a block of rows at a time: importing scipy.stats for this one
    figure cost every build 0.6-1.6 s (tests/test_rank.py checks that both agree, ties included).
    """
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:  # constant: undefined
        return None
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    concordant = tied_x = tied_y = 0.0  # each pair is seen twice; the ratio does not mind
    for i in range(0, len(x), 1024):
        sx, sy = np.sign(x[i : i + 1024, None] - x), np.sign(y[i : i + 1024, None] - y)
        concordant, tied_x, tied_y = concordant + (sx * sy).sum(), tied_x + abs(sx).sum(), tied_y + abs(sy).sum()
    # halved, the counts are scipy's integers, and this is its order of operations: the same float to the last bit
    tau = float((concordant / 2) / np.sqrt(tied_x / 2) / np.sqrt(tied_y / 2))
    return None if tau != tau else min(1.0, max(-1.0, tau))  # NaN in a list


def flops_disagreement(points: Sequence[RankingPoint], noise: float = 0.05) -> FlopsDisagreement:
    """How the MACs ordering and the measured p50 ordering disagree.

    A pair is mis-ordered when MACs say one is cheaper but it measured slower
    by more than ``noise`` (relative), i.e. beyond run-to-run spread.
    """
    pts = [p for p in points if p.macs is not None and p.p50_ms is not None]
    tau = kendall_tau([p.macs for p in pts], [p.p50_ms for p in pts])
    pairs = []
    for i, a in enumerate(pts):
        for b in pts[i + 1 :]:
            lo, hi = (a, b) if a.macs < b.macs else (b, a)
            if lo.macs < hi.macs and lo.p50_ms > hi.p50_ms * (1 + noise):
                pairs.append({"fewer_macs": lo.id, "but_slower_than": hi.id,
                              "macs_ratio": lo.macs / hi.macs, "latency_ratio": lo.p50_ms / hi.p50_ms})
    pairs.sort(key=lambda p: -p["latency_ratio"])
    misordered = sorted({p["fewer_macs"] for p in pairs})
    return FlopsDisagreement(tau, len(pts) * (len(pts) - 1) // 2, tuple(pairs), tuple(misordered), noise)
