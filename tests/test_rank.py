"""Rank: Pareto front on hand-made points, constraints, selection, FLOPs disagreement."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scbp_edge.rank import Constraints, flops_disagreement, kendall_tau, pareto_front, select
from tests.helpers import point


def pt(i, acc, lat, mem=10.0, size=1.0, macs=100):
    return point(i, accuracy=acc, p50_ms=lat, memory_mb=mem, size_mb=size, macs=macs)


def test_front_on_hand_made_points():
    pts = [pt("a", 90, 1.0), pt("b", 80, 0.5), pt("c", 85, 1.2), pt("d", 70, 0.5), pt("e", 95, 2.0),
           pt("f", 80, 0.5, mem=5)]
    # c dominated by a; d and b dominated by f (same acc/lat, less memory); e survives on accuracy.
    assert sorted(pareto_front(pts)) == ["a", "e", "f"]


def test_equal_points_both_stay():
    assert sorted(pareto_front([pt("a", 90, 1.0), pt("b", 90, 1.0)])) == ["a", "b"]


def test_select_respects_constraints_and_accuracy_drop():
    pts = [pt("seed", 90, 2.0), pt("x", 89.5, 1.0), pt("y", 80, 0.5)]
    front = pareto_front(pts)
    sel = select(pts, front, Constraints(), 90.0, accuracy_is_real=True)
    assert sel.id == "x"
    assert select(pts, front, Constraints(max_accuracy_drop=20), 90.0, True).id == "y"
    assert select(pts, front, Constraints(max_latency_ms=0.1), 90.0, True).id is None


def test_measured_energy_is_an_objective_and_a_limit():
    a, b = pt("a", 90, 1.0), pt("b", 90, 1.1)
    assert pareto_front([a, b]) == ["a"]
    a, b = replace(a, energy_mj=5.0), replace(b, energy_mj=3.0)  # b: slower but kinder to the battery
    assert sorted(pareto_front([a, b])) == ["a", "b"]
    front = pareto_front([a, b])
    assert select([a, b], front, Constraints(), 90.0, True).id == "a"
    assert select([a, b], front, Constraints(max_energy_mj=4.0), 90.0, True).id == "b"
    a, b = replace(a, energy_mj=None), replace(b, energy_mj=None)  # not measured: the limit cannot be shown to hold
    assert select([a, b], pareto_front([a, b]), Constraints(max_energy_mj=4.0), 90.0, True).id is None


def test_flops_disagreement_names_misordered():
    pts = [pt("a", 1, 1.0, macs=100), pt("b", 1, 3.0, macs=50), pt("c", 1, 0.5, macs=20)]
    got = flops_disagreement(pts)
    assert got.misordered_candidates == ("b",)
    assert got.kendall_tau is not None and got.kendall_tau < 1
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0


@pytest.mark.parametrize("n", [2, 5, 40, 1500])
def test_kendall_tau_is_scipys_tau_b_with_ties(n):
    """Issue 60: counted with numpy so that a build does not import scipy.stats; it must stay scipy's tau-b."""
    import numpy as np
    from scipy.stats import kendalltau

    rng = np.random.default_rng(n)
    a, b = rng.integers(0, 7, n).tolist(), rng.normal(size=n).round(1).tolist()  # ties in both
    a[0], b[0] = a[1] + 1, b[1] + 1  # neither list constant
    assert kendall_tau(a, b) == kendalltau(a, b).statistic  # to the bit: report.json's golden rows hold it
    assert kendall_tau(a, [-v for v in a]) == pytest.approx(-1.0)


def test_a_constant_list_has_no_rank_correlation_and_no_warning():
    """Issue 57: scipy's ConstantInputWarning reached build and report output when every proxy was equal."""
    import warnings

    from scbp_edge.report import _trained_summary

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
        pts = [point(f"n{i}", proxy_accuracy=50.0, test_accuracy=60.0 + i, accuracy_kind="test", params=10)
               for i in range(4)]
        assert _trained_summary(pts).proxy_spearman is None
