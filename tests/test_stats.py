"""Accuracy with its uncertainty (rank/stats.py) and latency ties (rank.tie_groups), on hand-made figures."""

from __future__ import annotations

import numpy as np
import pytest

from scbp_edge.rank import Constraints, select, tie_groups
from scbp_edge.rank.stats import images_to_decide, pack, paired, undecided, unpack, wilson
from scbp_edge.records import Paired, RankingPoint
from tests.helpers import point


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson(81, 100)  # 81 %, n = 100: 72.2-87.5 (Wilson score, z = 1.96)
    assert lo == pytest.approx(72.25, abs=0.05) and hi == pytest.approx(87.53, abs=0.05)
    lo, hi = wilson(450, 450)  # all right still leaves room below 100
    assert hi == 100.0 and lo == pytest.approx(99.15, abs=0.05)
    assert wilson(0, 0) is None


def test_pack_round_trips_any_length():
    for n in (1, 7, 8, 9, 450, 10000):
        v = np.random.default_rng(n).random(n) < 0.8
        assert (unpack(pack(v), n) == v).all()


def _vectors(n: int, seed_only: int, cand_only: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed and candidate right/wrong vectors on n images with the given disagreements (both right elsewhere)."""
    s, c = np.ones(n, bool), np.ones(n, bool)
    c[:seed_only] = False
    s[seed_only : seed_only + cand_only] = False
    return s, c


def test_paired_comparison_counts_only_the_disagreements():
    s, c = _vectors(450, 5, 0)  # the default build's case: 5 of 450 images, -1.11 pt
    p = paired(s, c)
    assert (p.seed_only, p.candidate_only) == (5, 0)
    assert p.diff_pt == pytest.approx(-100 * 5 / 450)
    assert p.p_value == pytest.approx(2 * 0.5 ** 5)  # exact McNemar: 0.0625, not below 0.05
    assert not p.distinguishable
    lo, hi = p.interval_pt
    assert lo < -1.0 < hi  # the 1-pt limit lies inside: the split cannot decide it
    assert undecided(p, 1.0) and not undecided(p, 3.0)
    s, c = _vectors(10000, 120, 20)  # 10k images, -1.0 pt with many disagreements: distinguishable
    q = paired(s, c)
    assert q.distinguishable and q.interval_pt[1] < 0


def test_images_to_decide_is_what_the_interval_needs():
    s, c = _vectors(450, 5, 0)
    p = paired(s, c)
    n = images_to_decide(p, 1.0)
    assert n is not None and n > 450
    # At that many images, with the same disagreement rates, the interval no longer contains the limit
    k = round(5 * n / 450)
    assert not undecided(paired(*_vectors(n, k, 0)), 1.0)
    exact = paired(*_vectors(100, 1, 0))  # a drop of exactly 1 pt on 100 images: no test size decides it
    assert images_to_decide(exact, 1.0) is None
    with pytest.raises(ValueError):
        paired(np.ones(3, bool), np.ones(4, bool))


def _paired(rounds: list[float]) -> Paired:
    return Paired("seed", float(np.median(rounds)), [min(rounds), max(rounds)], rounds)


def _pt(pid: str, p50: float, acc: float, *, rounds: list[float] | None = None, vs: dict | None = None,
        seed: bool = False) -> RankingPoint:
    return point(pid, p50_ms=p50, accuracy=acc, proxy_accuracy=acc, memory_mb=1.0, size_mb=1.0,
                 reference="seed" if seed else None, paired=_paired(rounds) if rounds else None, vs_seed=vs)


def test_the_accuracy_limit_rule_and_its_undecided_cases():
    """A candidate meets the limit by its measured drop; where the split cannot tell, the selection says so."""
    undecided_drop = paired(*_vectors(450, 5, 0)).to_dict()  # -1.11 pt, interval contains -1
    clear_drop = paired(*_vectors(10000, 300, 0)).to_dict()  # -3 pt, clearly beyond
    pts = [_pt("seed", 1.0, 99.1, rounds=[1.0] * 5, seed=True),
           _pt("fast", 0.5, 98.0, rounds=[2.0, 2.02, 1.98, 2.01, 2.0], vs=undecided_drop),
           _pt("faster", 0.4, 96.1, rounds=[2.5, 2.52, 2.48, 2.51, 2.5], vs=clear_drop)]
    sel = select(pts, [p.id for p in pts], Constraints(max_accuracy_drop=1.0), 99.1, True)
    assert sel.id == "seed"  # 'fast' lost 1.1 pt: beyond the limit by its measured drop
    assert set(sel.undecided) == {"fast"}  # ...but this test split cannot tell that from the limit
    u = sel.undecided["fast"]
    assert not u.meets and u.n == 450 and u.images_to_decide > 450
    loose = select(pts, [p.id for p in pts], Constraints(max_accuracy_drop=1.2), 99.1, True)
    assert loose.id == "fast" and "fast" in loose.undecided and loose.undecided["fast"].meets


def test_ties_need_overlapping_quartiles_and_are_not_chained():
    def pt(pid: str, speedups: list[float]) -> RankingPoint:
        return point(pid, paired=_paired(speedups))

    # b overlaps a, c overlaps b but not a: c leads its own group instead of inheriting a's tie
    pts = [pt("a", [2.00, 2.01, 2.02, 2.03, 2.04]), pt("b", [1.98, 1.99, 2.00, 2.01, 2.02]),
           pt("c", [1.95, 1.96, 1.975, 1.985, 1.99]), pt("d", [1.5, 1.5, 1.5, 1.5, 1.5])]
    assert tie_groups(pts) == [0, 0, 2, 3]
    # One outlier round does not stretch an interval into a tie: min-max would overlap, quartiles do not
    out = [pt("x", [2.0, 2.0, 2.0, 2.0, 1.2]), pt("y", [1.5, 1.5, 1.5, 1.5, 1.5])]
    assert tie_groups(out) == [0, 1]


def test_report_ranks_follow_the_tie_groups():
    from scbp_edge.report.sections.candidates import speed_ranks

    pts = [point(k, paired=_paired(r)) for k, r in
           (("a", [2.0, 2.01, 2.0, 2.02, 2.0]), ("b", [2.0, 2.0, 2.01, 2.0, 1.99]), ("c", [1.0] * 5))]
    assert speed_ranks(pts) == ["1=", "1=", "3"]
