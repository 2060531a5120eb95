"""Profiler: real ORT workers, statistics, interleaving, per-model isolation, energy honesty."""

from __future__ import annotations

import numpy as np
import pytest

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.export.onnx import export_onnx
from scbp_edge.measure import profile_one
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.records import MIN_QUIET_ROUNDS, LatencyStats
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
    kept = len(m.latency.round_p50_ms)  # a busy moment re-measures the chunk and may set busy rounds aside
    assert min(pol.rounds, MIN_QUIET_ROUNDS) <= kept <= 2 * pol.rounds
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


def test_a_busy_machine_is_seen_by_the_worker_and_flagged(tmp_path, models):
    # Four processes spinning on the cores: the one-thread worker waits for a core, which its CPU time shows.
    import subprocess
    import sys

    target = load_target(str(fast_target(tmp_path)))
    target.measure.rounds = 3
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        m = profile_one(__import__("pathlib").Path(next(iter(models.values()))), target)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert m.latency.waited is not None and m.latency.waited > 0.2
    assert m.latency.noisy  # every round was busy: nothing quiet to keep, so the figures are flagged


def test_busy_rounds_are_set_aside_across_the_chunk_so_pairs_stay_aligned():
    from scbp_edge.profile.runner import _busy, _keep_quiet_rounds, _Worker

    a = _Worker("a", None, None, rounds=[[1.0], [5.0], [1.1], [1.0], [1.2]], waited=[0.0, 0.4, 0.01, 0.0, 0.02])
    b = _Worker("b", None, None, rounds=[[2.0], [9.0], [2.1], [2.0], [2.2]], waited=[0.0, 0.0, 0.0, 0.3, 0.0])
    assert _busy(a) and _busy(b)
    _keep_quiet_rounds([a, b])
    assert a.rounds == [[1.0], [1.1], [1.2]] and b.rounds == [[2.0], [2.1], [2.2]]  # rounds 1 and 3 gone from both
    c = _Worker("c", None, None, rounds=[[1.0], [5.0], [6.0]], waited=[0.0, 0.4, 0.5])
    _keep_quiet_rounds([c])
    assert len(c.rounds) == 3  # too few quiet rounds: kept, and _finish flags the figures noisy
    d = _Worker("d", None, None, rounds=[[1.0], [1.0], [1.0]], waited=[None, None, None])  # several threads
    _keep_quiet_rounds([d])
    assert len(d.rounds) == 3 and not _busy(d)


def test_energy_above_idle_below_the_sensors_noise_is_not_reported_as_negative(tmp_path):
    """An H200 at ~118 W idle gave -14 to +60 mJ above idle for millisecond inferences: a negative figure
    is noise, so it is left out (null) while the total per inference stays."""
    from scbp_edge.profile.runner import _energy, _Worker
    from scbp_edge.targets import load_target

    target = load_target("desktop-gpu")
    w = _Worker("m", tmp_path / "m.onnx", None)  # type: ignore[arg-type] - no process: only the counters matter
    w.ready = {"energy_source": "nvml", "idle_w": 118.0}
    w.energy_uj, w.timed_s = 118.0 * 1e6 * 0.9, 1.0  # 10 % less than idle power over the window
    e = _energy(w, target, 100)
    assert e.mj_per_inference == pytest.approx(1062.0) and e.above_idle_mj is None
    w.energy_uj = 118.0 * 1e6 * 1.1
    assert _energy(w, target, 100).above_idle_mj == pytest.approx(118.0)
