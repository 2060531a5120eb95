"""Measurement budget: measure only N candidates, chosen where the Pareto front probably is.

A latency model - non-negative least squares on each segment's MACs plus a
constant (per-segment additive terms) - is fitted on the candidates measured so
far; the next batch is the unmeasured candidates whose *predicted* point lies
on, or closest to, the front of proxy accuracy vs latency.  Pure functions:
no backend, usable on recorded data to benchmark the strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BudgetPoint:
    """A candidate before it is measured: its proxy accuracy and each segment's MACs (what the latency model fits)."""

    id: str
    accuracy: float
    segment_macs: tuple[int, ...]
    precision: str = ""
    reference: str | None = None


@dataclass(frozen=True)
class _Predicted:
    """A candidate's proxy accuracy and its measured, else predicted, p50: what the front is drawn on."""

    id: str
    accuracy: float
    p50_ms: float


def _groups(points: Sequence[BudgetPoint]) -> list[str]:
    return sorted({p.precision for p in points})


def _features(points: Sequence[BudgetPoint], groups: list[str]) -> np.ndarray:
    """[1, MACs per segment], one block per precision: int8 and fp32 of one network cost differently."""
    width = 1 + len(points[0].segment_macs) if points else 1
    rows = np.zeros((len(points), width * len(groups)), dtype=np.float64)
    for i, p in enumerate(points):
        g = groups.index(p.precision)
        rows[i, g * width : (g + 1) * width] = [1.0, *p.segment_macs]
    return rows


def fit_latency(points: Sequence[BudgetPoint], p50: dict[str, float]) -> np.ndarray:
    """Coefficients of p50 ~ c0 + sum_s c_s * MACs_s (all >= 0) on the measured points."""
    from scipy.optimize import nnls

    meas = [p for p in points if p.id in p50]
    x = _features(meas, _groups(points))
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(x / scale, np.array([p50[p.id] for p in meas]))
    return coef / scale


def predict(points: Sequence[BudgetPoint], coef: np.ndarray) -> dict[str, float]:
    return {p.id: float(v) for p, v in zip(points, _features(points, _groups(points)) @ coef)}


def _front_distance(acc: float, lat: float, front: list[tuple[float, float]], span: tuple[float, float]) -> float:
    """0 if no front point dominates (acc, lat), else the smallest normalised gap to one that does."""
    gaps = [max(0.0, (fa - acc) / span[0]) + max(0.0, (lat - fl) / span[1])
            for fa, fl in front if fa >= acc and fl <= lat and (fa, fl) != (acc, lat)]
    return min(gaps) if gaps else 0.0


def next_batch(points: Sequence[BudgetPoint], p50: dict[str, float], k: int) -> list[str]:
    """The ``k`` unmeasured candidates nearest the front predicted from the measured ones."""
    todo = [p for p in points if p.id not in p50]
    if not todo or k <= 0:
        return []
    pred = predict(points, fit_latency(points, p50))
    lat = {p.id: p50.get(p.id, pred[p.id]) for p in points}
    accs = [p.accuracy for p in points]
    span = (max(accs) - min(accs) or 1.0, (max(lat.values()) - min(lat.values())) or 1.0)
    from scbp_edge.rank import pareto_front

    on = set(pareto_front([_Predicted(p.id, p.accuracy, lat[p.id]) for p in points],
                          (("accuracy", "max"), ("p50_ms", "min"))))
    front = [(p.accuracy, lat[p.id]) for p in points if p.id in on]
    ranked = sorted((_front_distance(p.accuracy, lat[p.id], front, span), lat[p.id], p.id) for p in todo)
    return [cid for _, _, cid in ranked[:k]]


def initial_batch(points: Sequence[BudgetPoint], k: int) -> list[str]:
    """References (seed, uniform) first - they span the latency range - then a spread in MACs."""
    refs = [p.id for p in points if p.reference]
    rest = sorted((p for p in points if not p.reference), key=lambda p: sum(p.segment_macs))
    n = max(0, k - len(refs))
    picks = [rest[round(i * (len(rest) - 1) / max(1, n - 1))].id for i in range(n)] if rest and n else []
    return list(dict.fromkeys(refs + picks))[: max(k, len(refs))]


def run_budget(points: Sequence[BudgetPoint], budget: int, batch: int,
               measure: Callable[[list[str]], dict[str, float]]) -> dict[str, float]:
    """Measure at most ``budget`` candidates via ``measure(ids) -> {id: p50}``; returns all measured."""
    p50: dict[str, float] = {}
    first = initial_batch(points, min(budget, len(points[0].segment_macs) + 2))
    p50.update(measure(first[:budget]))
    while len(p50) < min(budget, len(points)):
        ids = next_batch(points, p50, min(batch, budget - len(p50)))
        if not ids:
            break
        got = measure(ids)
        p50.update(got)
        if not got:
            break
    return p50


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (accuracy up, latency down) points, bounded by ``ref`` = (min acc, max latency)."""
    pts = sorted((a, lat) for a, lat in points if a > ref[0] and lat < ref[1])
    area, best_lat = 0.0, ref[1]
    for a, lat in reversed(pts):  # highest accuracy first
        if lat < best_lat:
            area += (a - ref[0]) * (best_lat - lat)
            best_lat = lat
    return area
