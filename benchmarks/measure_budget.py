"""Issue-5 benchmark: --measure-budget on the CPU target, where measuring everything gives ground truth.

Every candidate is measured once (ground truth); the budget strategy is then
replayed against those measurements at 25% of the candidates.  Reports the
hypervolume of the budget front relative to the full front and the latency
predictor's error on the candidates it never measured.
Writes benchmarks/results/measure_budget.{json,md}.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _common import OUT, ROOT, SHARED, cifar, publish

from scbp_edge.lab import Item


def main() -> int:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import (
        BudgetPoint,
        DeriveContext,
        NetworkJob,
        ProxyData,
        evaluate_network,
        fit_latency,
        get_runtime,
        hypervolume,
        load_target,
        predict,
        profile_interleaved,
        run_budget,
        seed_payload,
        split_val,
    )

    ckpt = SHARED / "seeds/cifar10-resnet/resnet20-12fca82f.th"
    if not ckpt.is_file():
        print("needs ../shared", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    wb = Workbench(SeedOptions("cifar-resnet20", str(ckpt), segments="6"))
    cands = wb.space("0,0.25,0.5", limit=100, sample_seed=0)
    test = cifar("test")
    train, val = split_val(test, 0.2, 0)  # benchmark-only: BN images from one part, proxy on the other
    spec = wb.seed.spec
    bn_x, _ = train.subset(np.random.default_rng(0).permutation(len(train))[:256]).tensors(spec.mean, spec.std)
    val_x, val_y = val.tensors(spec.mean, spec.std)
    data = ProxyData(bn_x, val_x, val_y, None)
    work = ROOT / "benchmarks" / ".work" / "budget"
    work.mkdir(parents=True, exist_ok=True)
    points = []
    for c in cands:
        res = evaluate_network(NetworkJob(c.id, tuple(c.ratios), ("fp32",)),
                               DeriveContext(seed_payload(wb), data, False, cands[0].params, {}))
        (work / f"{c.id}.onnx").write_bytes(res.onnx.data)
        points.append(BudgetPoint(c.id, res.variants["fp32"].accuracy.value, tuple(res.segment_macs),
                                  reference=c.reference))
    target = load_target("cpu")
    be = get_runtime("onnxruntime")
    truth: dict[str, float] = {}
    t1 = time.perf_counter()
    profile_interleaved([Item(p.id, work / f"{p.id}.onnx") for p in points], target, backend=be,
                        worker_argv=be.worker_argv(),
                        on_result=lambda k, m, e: truth.__setitem__(k, m.latency.p50_ms) if m else None)
    measure_all_s = time.perf_counter() - t1
    points = [p for p in points if p.id in truth]
    budget = max(1, round(0.25 * len(points)))
    got = run_budget(points, budget, 8, lambda ids: {i: truth[i] for i in ids})
    acc = {p.id: p.accuracy for p in points}
    ref = (min(acc.values()), max(truth.values()) * 1.01)
    hv_full = hypervolume([(acc[i], truth[i]) for i in truth], ref)
    hv_budget = hypervolume([(acc[i], got[i]) for i in got], ref)
    pred = predict(points, fit_latency(points, got))
    unseen = [i for i in truth if i not in got]
    mape = float(np.mean([abs(pred[i] - truth[i]) / truth[i] for i in unseen])) if unseen else None
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "seed": "cifar-resnet20 (../shared), 6 segments",
           "ratios": "0,0.25,0.5 (100 sampled + references, twins removed)", "candidates": len(points),
           "budget": budget, "measured": len(got), "hypervolume_ratio": hv_budget / hv_full,
           "predictor_mape_unmeasured": mape, "measure_all_s": measure_all_s, "wall_s": time.perf_counter() - t0}
    md = "\n".join([
        f"# Measurement budget on the CPU target ({out['date']})", "",
        f"{out['seed']}, ratios {out['ratios']}: {len(points)} candidates, all measured once for ground truth "
        f"({measure_all_s:.0f} s); the budget strategy replayed on those measurements.", "",
        "| figure | value |", "|---|---|",
        f"| budget | {budget} of {len(points)} (25%) |",
        f"| hypervolume of the budget front / full front | {out['hypervolume_ratio']:.3f} (goal >= 0.95) |",
        f"| latency predictor MAPE on never-measured candidates | {100 * mape:.1f}% |" if mape is not None else "",
        ""])
    publish(OUT, "measure_budget", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
