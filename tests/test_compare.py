"""compare: regression vs noise from recorded spread; CLI exit codes."""

from __future__ import annotations

import json

from scbp_edge.report.compare import compare
from tests.helpers import cli


def rep(p50, rounds, size=1.0, acc=90.0):
    return {"points": [{"id": "a", "p50_ms": p50, "p90_ms": p50 * 1.2, "memory_mb": 10.0, "size_mb": size,
                        "accuracy": acc, "round_p50_ms": rounds}]}


def verdicts(base, cur, thr=0.05):
    return {d.metric: d.verdict for d in compare(base, cur, thr)}


def test_separated_slowdown_is_a_regression():
    v = verdicts(rep(1.0, [0.98, 1.0, 1.01, 0.99, 1.02]), rep(1.2, [1.18, 1.2, 1.22, 1.19, 1.21]))
    assert v["p50_ms"] == "regression"


def test_slowdown_within_spread_is_noise():
    v = verdicts(rep(1.0, [0.7, 1.0, 1.4, 0.8, 1.3]), rep(1.1, [0.75, 1.1, 1.45, 0.9, 1.2]))
    assert v["p50_ms"] == "noise"


def test_deterministic_metrics_and_improvements():
    v = verdicts(rep(1.0, [1, 1, 1], size=1.0, acc=90), rep(0.5, [0.5, 0.5, 0.5], size=1.2, acc=80))
    assert v["size_mb"] == "regression" and v["accuracy"] == "regression" and v["p50_ms"] == "improved"


def test_cli_exit_codes(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(rep(1.0, [0.98, 1.0, 1.01, 0.99])))
    (tmp_path / "c.json").write_text(json.dumps(rep(1.3, [1.28, 1.3, 1.31, 1.29])))
    assert cli("compare", str(tmp_path / "b.json"), str(tmp_path / "b.json")).returncode == 0
    res = cli("compare", str(tmp_path / "b.json"), str(tmp_path / "c.json"), "--max-regression", "5%")
    assert res.returncode == 1 and "regression" in res.stdout
    bad = cli("compare", str(tmp_path / "b.json"), str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "cannot read report" in bad.stderr


def test_energy_is_tracked_where_both_runs_measured_it():
    base, cur = rep(1.0, [1, 1, 1]), rep(1.0, [1, 1, 1])
    assert "energy_mj" not in verdicts(base, cur)  # no sensor: nothing to compare, no false verdict
    base["points"][0]["energy_mj"], cur["points"][0]["energy_mj"] = 2.0, 2.6
    assert verdicts(base, cur)["energy_mj"] == "regression"
