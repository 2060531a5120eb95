"""compare: regression vs noise from paired speed-ups, multiple comparisons, fingerprints; CLI exit codes."""

from __future__ import annotations

import json
import math
import random

import pytest

from scbp_edge.report.compare import as_report, compare
from tests.helpers import cli


def point(pid="a", speedup=1.0, rounds=None, size=1.0, acc=90.0, p50=1.0):
    """A ranking point as report.json holds it."""
    rounds = rounds if rounds is not None else [speedup] * 5
    mid = sorted(rounds)[len(rounds) // 2]
    return {"id": pid, "network": pid, "precision": "fp32", "ratios": [0.5], "reference": "seed", "is_seed": False,
            "accuracy": acc, "accuracy_kind": "proxy", "proxy_accuracy": acc, "test_accuracy": None,
            "p50_ms": p50, "p90_ms": p50 * 1.2, "p99_ms": p50 * 1.3, "cv": 0.01, "memory_mb": 10.0, "size_mb": size,
            "params": 1000, "macs": 10000, "speedup": mid,
            "paired": {"reference": "seed", "speedup": mid, "interval": [min(rounds), max(rounds)], "rounds": rounds}}


def rep(*points, fp=None):
    return {"selection": {"id": None, "reason": "test"}, "points": list(points), "front": [],
            "fingerprints": fp or {"weights_sha256": "w", "data": "d", "target": "cpu"}}


def verdicts(base, cur, thr=0.05):
    return {(d.candidate, d.metric): d.verdict for d in compare(as_report("baseline", base),
                                                                as_report("current", cur), thr)}


def test_a_slowdown_beyond_the_rounds_is_a_regression_with_three_rounds_a_side():
    """Jetson targets take 3 rounds: an exact rank test could never reach p < 0.05 there; Welch's can."""
    base = rep(point(rounds=[1.50, 1.51, 1.49]))
    cur = rep(point(rounds=[1.29, 1.30, 1.31]))  # 15 % slower against the seed of its own run
    assert verdicts(base, cur)[("a", "p50_ms")] == "regression"


def test_a_slowdown_within_the_rounds_spread_is_noise():
    base = rep(point(rounds=[1.2, 1.6, 1.4]))
    cur = rep(point(rounds=[1.1, 1.55, 1.3]))
    assert verdicts(base, cur)[("a", "p50_ms")] == "noise"


def test_machine_drift_cancels_against_the_seed():
    """Both runs' p50s moved 20 % (a busier machine), the speed-ups did not: no regression."""
    base, cur = rep(point(rounds=[1.5] * 3, p50=1.0)), rep(point(rounds=[1.5] * 3, p50=1.2))
    assert verdicts(base, cur)[("a", "p50_ms")] == "ok"


def test_ninety_metrics_of_noise_give_no_false_alarm():
    rnd = random.Random(1)
    pts_b = [point(f"c{i}", rounds=[math.exp(rnd.gauss(0.3, 0.02)) for _ in range(5)]) for i in range(45)]
    pts_c = [point(f"c{i}", rounds=[math.exp(rnd.gauss(0.3, 0.02)) for _ in range(5)]) for i in range(45)]
    assert "regression" not in verdicts(rep(*pts_b), rep(*pts_c), thr=0.0).values()


def test_deterministic_metrics_and_improvements():
    v = verdicts(rep(point(size=1.0, acc=90, rounds=[1.0] * 3)), rep(point(size=1.2, acc=80, rounds=[2.0] * 3)))
    assert v[("a", "size_mb")] == "regression" and v[("a", "accuracy")] == "regression"
    assert v[("a", "p50_ms")] == "improved"


def test_energy_is_tracked_where_both_runs_measured_it():
    base, cur = rep(point()), rep(point())
    assert ("a", "energy_mj") not in verdicts(base, cur)  # no sensor: nothing to compare, no false verdict
    base["points"][0]["energy_mj"], cur["points"][0]["energy_mj"] = 2.0, 2.6
    assert verdicts(base, cur)[("a", "energy_mj")] == "regression"


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_cli_exit_codes_and_refusals(tmp_path):
    def write(name, obj):
        (tmp_path / name).write_text(json.dumps(obj))
        return str(tmp_path / name)

    b = write("b.json", rep(point(rounds=[1.5, 1.51, 1.49, 1.5])))
    c = write("c.json", rep(point(rounds=[1.2, 1.21, 1.19, 1.2])))
    assert cli("compare", b, b).returncode == 0
    res = cli("compare", b, c, "--max-regression", "5%")
    assert res.returncode == 1 and "regression" in res.stdout
    other = write("o.json", rep(point(rounds=[1.2] * 3), fp={"weights_sha256": "other", "data": "d", "target": "cpu"}))
    res = cli("compare", b, other)
    assert res.returncode == 2 and "not comparable" in res.stderr and "weights_sha256" in res.stderr
    assert cli("compare", b, other, "--force").returncode == 1


@pytest.mark.parametrize(("content", "match"), [
    ("[1, 2]", "not a scbp-edge report.json"),
    ('{"points": [{"p50_ms": 1}]}', "does not fit (report: missing field 'selection')"),
    ("[" * 100000, "cannot read report"),
])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_malformed_reports_are_one_line(tmp_path, content, match):
    good = tmp_path / "g.json"
    good.write_text(json.dumps(rep(point())))
    (tmp_path / "bad.json").write_text(content)
    res = cli("compare", str(good), str(tmp_path / "bad.json"))
    assert res.returncode == 2 and match in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_missing_file_and_negative_threshold(tmp_path):
    good = tmp_path / "g.json"
    good.write_text(json.dumps(rep(point())))
    assert "cannot read report" in cli("compare", str(good), str(tmp_path / "missing.json")).stderr
    res = cli("compare", str(good), str(good), "--max-regression=-5%")
    assert res.returncode == 2 and "0 % or more" in res.stderr
