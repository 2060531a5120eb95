"""Profiler: real ORT workers, statistics, interleaving, per-model isolation, energy honesty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.export.onnx import export_onnx
from scbp_edge.measure import profile_one
from scbp_edge.profile.runner import MAX_EXTRA, Item, profile_interleaved
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


def test_disturbed_rounds_are_set_aside_per_worker_and_pairs_use_the_rounds_both_kept():
    from scbp_edge.profile.runner import _clean, _set_aside_disturbed, _Worker, paired

    # a: round 1 waited for a core, round 3 ran 1.6x slow with the core to itself (a neighbour on the core)
    a = _Worker("a", None, None, rounds=[[1.0], [5.0], [1.05], [1.6], [1.0], [1.02]],
                waited=[0.0, 0.4, 0.01, 0.0, 0.02, 0.0])
    ref = _Worker("ref", None, None, rounds=[[2.0], [2.1], [2.0], [2.0], [3.5], [2.02]], waited=[0.0] * 6)
    assert _clean(a) == [True, False, True, False, True, True]
    assert _clean(ref) == [True, True, True, True, False, True]
    for w in (a, ref):
        _set_aside_disturbed(w)
    assert a.kept == [0, 2, 4, 5] and ref.kept == [0, 1, 2, 3, 5] and not a.disturbed
    assert a.slowest == 5.0 and a.measured == 6
    p = paired(a, ref, "ref")
    assert p.rounds == [2.0 / 1.0, 2.0 / 1.05, 2.02 / 1.02]  # rounds 0, 2, 5: kept by both
    # Too few clean rounds to set any aside: everything stays, and the figures are flagged
    c = _Worker("c", None, None, rounds=[[1.0], [5.0], [6.0]], waited=[0.0, 0.4, 0.5])
    _set_aside_disturbed(c)
    assert c.kept == [0, 1, 2] and c.disturbed
    # Several inference threads: waiting cannot be told, slowness still can
    d = _Worker("d", None, None, rounds=[[1.0], [1.0], [1.05]], waited=[None, None, None])
    _set_aside_disturbed(d)
    assert d.kept == [0, 1, 2] and not d.disturbed


def test_only_a_worker_left_without_enough_clean_rounds_is_flagged(tmp_path, models):
    """On an idle machine nothing is flagged; rounds measured again are counted, and the reference loads once."""
    target = load_target(str(fast_target(tmp_path)))
    items = [Item(k, Path(v)) for k, v in models.items()]
    ready: list[int] = []
    results: dict[str, Any] = {}
    backend = get_runtime("onnxruntime")
    profile_interleaved(items, target, backend=backend, worker_argv=backend.worker_argv(), chunk=1,
                        on_result=lambda k, m, e: results.__setitem__(k, m), on_ready=lambda: ready.append(1),
                        reference=items[0])
    assert len(ready) == len(items)  # the extra reference worker of each chunk is not a model loaded
    assert set(results) == set(models) and all(m is not None for m in results.values())
    for m in results.values():
        lat = m.latency
        assert target.measure.rounds <= lat.rounds_measured <= (1 + MAX_EXTRA) * target.measure.rounds
        assert lat.rounds_measured - lat.rounds_set_aside == len(lat.round_p50_ms)
        assert lat.noisy or len(lat.round_p50_ms) >= target.measure.rounds  # clean rounds enough, or a flag
        assert m.paired is not None and m.paired.reference == items[0].key


def test_energy_above_idle_below_the_sensors_noise_is_not_reported_as_negative(tmp_path):
    """An H200 at ~118 W idle gave -14 to +60 mJ above idle for millisecond inferences: a negative figure
    is noise, so it is left out (null) while the total per inference stays."""
    from scbp_edge.profile.runner import _energy, _Worker
    from scbp_edge.records.worker import WorkerReady
    from scbp_edge.targets import load_target

    target = load_target("desktop-gpu")
    w = _Worker("m", tmp_path / "m.onnx", None)  # type: ignore[arg-type] - no process: only the counters matter
    w.ready = WorkerReady(energy_source="nvml", idle_w=118.0)
    w.energy_uj, w.timed_s = 118.0 * 1e6 * 0.9, 1.0  # 10 % less than idle power over the window
    e = _energy(w, target, 100)
    assert e.mj_per_inference == pytest.approx(1062.0) and e.above_idle_mj is None
    w.energy_uj = 118.0 * 1e6 * 1.1
    assert _energy(w, target, 100).above_idle_mj == pytest.approx(118.0)


def test_a_worker_answer_that_does_not_fit_its_record_fails_that_candidate_in_one_line(tmp_path, models):
    """Worker answers are decoded into records (records/worker.py): a round whose latencies are not numbers is
    a failure of that candidate naming the field, not a TypeError inside the statistics."""
    import sys

    worker = tmp_path / "odd_worker.py"
    worker.write_text(
        "import json, sys\n"
        "sys.stdin.readline()\n"
        "print(json.dumps({'ready': True, 'threads': 1}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    if json.loads(line).get('cmd') == 'stop':\n"
        "        print(json.dumps({}), flush=True)\n"
        "        break\n"
        "    print(json.dumps({'latencies_ms': 'fast', 'wall_s': 1.0}), flush=True)\n")
    target = load_target(str(fast_target(tmp_path)))
    results: dict[str, Any] = {}
    path = Path(next(iter(models.values())))
    profile_interleaved([Item("odd", path)], target, backend=get_runtime("onnxruntime"),
                        worker_argv=[sys.executable, str(worker)],
                        on_result=lambda k, m, e: results.__setitem__(k, (m, e)))
    measurement, error = results["odd"]
    assert measurement is None and "'round' answer that does not fit" in error and "latencies_ms" in error
