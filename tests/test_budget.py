"""Measurement budget: latency model, front-directed choice, hypervolume; the CLI path."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from scbp_edge.rank import pareto_front
from scbp_edge.rank.budget import BudgetPoint, fit_latency, hypervolume, predict, run_budget
from tests.helpers import cli, fast_target, point


def test_hypervolume_hand_made():
    assert hypervolume([(90, 1.0), (80, 0.5)], (70, 2.0)) == pytest.approx(25.0)
    assert hypervolume([(90, 1.0), (85, 1.5)], (70, 2.0)) == pytest.approx(20.0)  # dominated point adds nothing


def _synthetic():
    rng = np.random.default_rng(0)
    pts, truth = [], {}
    for i, cfg in enumerate(itertools.product((0, 0.25, 0.5, 0.75), repeat=4)):
        macs = [int(1e7 * (1 - r) * (s + 1)) for s, r in enumerate(cfg)]
        acc = 90 - 6 * sum(r * r * (4 - s) for s, r in enumerate(cfg)) + rng.normal(0, 0.3)
        pts.append(BudgetPoint(str(i), acc, tuple(macs), reference="seed" if i == 0 else None))
        truth[str(i)] = 0.2 + 3e-8 * macs[0] + 1e-8 * macs[1] + 2e-8 * macs[2] + 0.5e-8 * macs[3]
    return pts, truth


def test_latency_model_recovers_additive_costs():
    pts, truth = _synthetic()
    sample = pts[::13]  # spread over the product, so every segment's MACs vary
    coef = fit_latency(sample, {p.id: truth[p.id] for p in sample})
    pred = predict(pts, coef)
    assert max(abs(pred[k] - truth[k]) / truth[k] for k in truth) < 1e-6


def test_budget_of_a_quarter_finds_the_front():
    pts, truth = _synthetic()
    asked: list[str] = []

    def measure(ids):
        asked.extend(ids)
        return {i: truth[i] for i in ids}

    got = run_budget(pts, len(pts) // 4, 8, measure)
    assert len(got) <= len(pts) // 4 and len(asked) == len(set(asked))
    acc = {p.id: p.accuracy for p in pts}
    ref = (min(acc.values()), max(truth.values()) * 1.01)
    full = hypervolume([(acc[i], truth[i]) for i in truth], ref)
    part = hypervolume([(acc[i], got[i]) for i in got], ref)
    assert part >= 0.95 * full
    front = set(pareto_front([point(i, accuracy=acc[i], p50_ms=truth[i]) for i in truth],
                             (("accuracy", "max"), ("p50_ms", "min"))))
    assert len(front & set(got)) >= 0.8 * len(front)


@pytest.mark.slow
def test_cli_build_with_budget(tmp_path):
    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.5",
              "--scope", "stream", "--runs", str(tmp_path), "--measure-budget", "4", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads((tmp_path / json.loads(res.stdout)["run_dir"].split("/")[-1] / "report.json").read_text())
    assert rep["counts"]["measured"] == 4 and rep["counts"]["exported"] == 4
    assert rep["budget"] == {"budget": 4, "measured": 4, "not_measured": 4}
