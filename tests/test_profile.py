"""Profiler: real ORT workers, statistics, interleaving, per-model isolation, energy honesty."""

from __future__ import annotations

import numpy as np
import pytest

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.export.onnx import export_onnx
from scbp_edge.measure import profile_one
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.records import LatencyStats
from scbp_edge.runtimes import get_runtime
from scbp_edge.targets import load_target
from tests.helpers import fast_target


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    wb = Workbench(SeedOptions("cifar-resnet20"))
    paths = {}
    for ratios in ([0, 0, 0], [0.5, 0.5, 0.5]):
        cand, model = wb.candidate(ratios)
        paths[cand.id] = export_onnx(model, (3, 32, 32), tmp / f"{cand.id}.onnx").path
    return paths


def test_latency_stats_from_samples():
    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0, 100.0], batch=2, rounds=[[1, 2], [3, 4, 100]])
    assert s.runs == 5 and s.p50_ms == 3.0 and s.mean_ms == 22.0
    assert s.p99_ms > s.p90_ms > s.p50_ms
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)
    assert s.throughput_ips == pytest.approx(2000 / 22.0)
    assert s.round_p50_ms == [1.5, 4.0]


def test_profile_real_model_meets_policy(tmp_path, models):
    target = load_target(str(fast_target(tmp_path)))
    path = next(iter(models.values()))
    m = profile_one(__import__("pathlib").Path(path), target)
    pol = target.measure
    assert m.latency.runs >= pol.rounds * pol.min_runs
    assert len(m.latency.round_p50_ms) == pol.rounds
    assert 0 < m.latency.p50_ms <= m.latency.p90_ms <= m.latency.p99_ms
    assert m.memory_mb is not None and m.memory_mb > 0 and m.baseline_rss_mb > 0
    assert m.threads == 1
    # This machine exposes no RAPL counter: energy must be null with a reason, never a number.
    if m.energy.mj_per_inference is None:
        assert m.energy.reason


def test_interleaved_rounds_and_failure_isolation(tmp_path, models):
    target = load_target(str(fast_target(tmp_path)))
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    items = [Item(k, __import__("pathlib").Path(v)) for k, v in models.items()]
    items.insert(1, Item("broken", tmp_path / "broken.onnx"))
    results, rounds = {}, []
    backend = get_runtime("onnxruntime")
    profile_interleaved(items, target, backend=backend, worker_argv=backend.worker_argv(),
                        on_result=lambda k, m, e: results.__setitem__(k, (m, e)), on_round=lambda: rounds.append(1))
    assert results["broken"][0] is None and "failed" in results["broken"][1]
    good = [k for k in models]
    assert all(results[k][0] is not None for k in good)
    assert len(rounds) == target.measure.rounds
    full, half = (results[k][0] for k in good)
    # Each model ran in its own process: different peak memory baselines are per process.
    assert full.latency.p50_ms > 0 and half.latency.p50_ms > 0
