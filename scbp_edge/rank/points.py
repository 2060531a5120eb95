"""Measured candidates as flat points: the one view that ranking, training picks and reports share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scbp_edge.records import CandidateRow, Measurement, RankingPoint


def memory_of(m: Measurement) -> float | None:
    """The memory that limits the target: the GPU's where measured, else the host process's."""
    return next((v for v in (m.device_memory_mb, m.memory_mb, m.peak_rss_mb) if v is not None), None)


def reference_precision(rows: Sequence[CandidateRow]) -> str | None:
    """The precision the seed is the reference at: the first one searched (fp32 on a CPU, fp16 on a Nano).

    A build stores each network's candidates in the order of its precisions, so it is the first seed row's.
    """
    seeds = sorted((r for r in rows if r.reference == "seed"), key=lambda r: r.position)
    return seeds[0].precision if seeds else None


def _point(r: CandidateRow, ref_prec: str | None) -> RankingPoint:
    """One measured row as a point, before its intervals and speed-up are known."""
    m = r.measurement
    assert m is not None and r.static is not None  # a measured row has both (pipeline/stages.py)
    lat, proxy, trained = m.latency, r.accuracy, r.trained
    test = trained.test_accuracy if trained else None
    proxy_value = proxy.value if proxy else None
    return RankingPoint(
        id=r.id, network=r.network, precision=r.precision, ratios=tuple(r.ratios), scopes=tuple(r.scopes),
        reference=r.reference,
        is_seed=r.reference == "seed" and r.precision == ref_prec,
        accuracy=test if test is not None else proxy_value, accuracy_kind="test" if test is not None else "proxy",
        proxy_accuracy=proxy_value, test_accuracy=test,
        p50_ms=lat.p50_ms, p90_ms=lat.p90_ms, p99_ms=lat.p99_ms, cv=lat.cv,
        p50_interval_ms=tuple(lat.p50_interval_ms) if lat.p50_interval_ms else None,
        round_p50_ms=tuple(lat.round_p50_ms), noisy=bool(lat.noisy), rounds_measured=lat.rounds_measured,
        rounds_set_aside=lat.rounds_set_aside, slowest_round=lat.slowest_round,
        memory_mb=memory_of(m), device_memory_mb=m.device_memory_mb, size_mb=m.model_size_mb,
        params=r.static.params, macs=r.static.macs, energy_mj=m.energy.mj_per_inference, paired=m.paired,
        reconstruction=proxy.reconstruction if proxy else None,
        test_images=trained.test_images if trained else None,
        proxy_images=proxy.val_images if proxy else None, batched=tuple(m.batched))


def points_of(rows: Sequence[CandidateRow]) -> list[RankingPoint]:
    """One point per measured candidate, with its speed-up against the reference seed of the same run.

    ``accuracy`` is the best accuracy the candidate has: its test accuracy
    after fine-tuning where it was trained (``accuracy_kind`` "test"), else
    its proxy ("proxy").
    """
    ref_prec = reference_precision(rows)
    measured = [r for r in rows if r.status == "measured"]
    pts = [_point(r, ref_prec) for r in measured]
    correct = {r.id: r.trained.test_correct if r.trained else None for r in measured}
    seed = next((p for p in pts if p.is_seed), None)
    pts = [_with_uncertainty(p, seed, correct) for p in pts]
    return [replace(p, speedup=_speedup(p, seed)) for p in pts]


def _speedup(p: RankingPoint, seed: RankingPoint | None) -> float | None:
    if p.paired is not None and p.paired.speedup is not None:
        return p.paired.speedup  # candidate vs seed within the same interleaved rounds
    return seed.p50_ms / p.p50_ms if seed and p.p50_ms else None


def _with_uncertainty(p: RankingPoint, seed: RankingPoint | None, correct: dict[str, str | None]) -> RankingPoint:
    """The point's 95 % intervals, and where fine-tuned, its pairing with the seed on the same test images."""
    from scbp_edge.rank.stats import paired, unpack, wilson

    n, acc = p.test_images, p.test_accuracy
    pn, pacc = p.proxy_images, p.proxy_accuracy
    vs_seed = None
    ref_vec = correct.get(seed.id) if seed is not None else None
    vec = correct.get(p.id)
    if seed is not None and ref_vec and seed.test_images and vec and n == seed.test_images and not p.is_seed:
        vs_seed = paired(unpack(ref_vec, seed.test_images), unpack(vec, n)).to_dict()
    return replace(p, test_interval=wilson(round(acc * n / 100), n) if n and acc is not None else None,
                   proxy_interval=wilson(round(pacc * pn / 100), pn) if pn and pacc is not None else None,
                   vs_seed=vs_seed)
