"""Issue-3 benchmark: the CPU build path on cifar-resnet56 from ../shared.

Writes benchmarks/results/cpu_build.{json,md}.  Every figure is measured here,
in this run; none is copied from elsewhere.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scbp_edge.profile.runner import Item

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results"


def _profile_all(items, target):
    from scbp_edge.profile.runner import profile_interleaved
    from scbp_edge.runtimes import get_runtime

    backend = get_runtime("onnxruntime")
    got = {}
    t = time.perf_counter()
    profile_interleaved(items, target, backend=backend, worker_argv=backend.worker_argv(),
                        on_result=lambda k, m, e: got.__setitem__(k, m))
    return got, time.perf_counter() - t


def _eager_ms(model, shape, threads, n=200):
    torch.set_num_threads(threads)
    x = torch.randn(1, *shape)
    with torch.no_grad():
        for _ in range(20):
            model(x)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            model(x)
            ts.append((time.perf_counter() - t) * 1000)
    return float(np.median(ts))


def _matmul_gflops(threads, n=1024, reps=20):
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main() -> int:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx
    from scbp_edge.rank import flops_disagreement, kendall_tau
    from scbp_edge.targets import load_target

    ckpt = SHARED / "seeds/cifar10-resnet/resnet56-4bfd9763.th"
    if not ckpt.is_file():
        print("needs ../shared/seeds/cifar10-resnet/resnet56-4bfd9763.th", file=sys.stderr)
        return 2
    target = load_target("cpu")
    threads = target.threads or os.cpu_count() or 1
    wb = Workbench(SeedOptions("cifar-resnet56", str(ckpt)))
    work = ROOT / "benchmarks" / ".work"
    work.mkdir(exist_ok=True)
    cands, export_s = {}, []
    for c in wb.space("0,0.25,0.5"):
        t = time.perf_counter()
        _, model = wb.candidate(c.ratios)
        export_onnx(model, (3, 32, 32), work / f"{c.id}.onnx")
        export_s.append(time.perf_counter() - t)
        cands[c.id] = c
    items = [Item(cid, work / f"{cid}.onnx") for cid in cands]
    run1, t1 = _profile_all(items, target)
    run2, t2 = _profile_all(list(reversed(items)), target)
    ids = [cid for cid in cands if run1.get(cid) and run2.get(cid)]
    tau_runs = kendall_tau([run1[i].latency.p50_ms for i in ids], [run2[i].latency.p50_ms for i in ids])
    cvs = [m.latency.cv for m in list(run1.values()) + list(run2.values()) if m]
    pts = [{"id": i, "macs": cands[i].macs, "p50_ms": run1[i].latency.p50_ms} for i in ids]
    dis = flops_disagreement(pts)
    seed_id = next(c.id for c in cands.values() if c.reference == "seed")
    eager = _eager_ms(wb.seed.model, (3, 32, 32), threads)
    # ResNet-18 at 224x224: achieved GFLOP/s on ORT vs this machine's matmul rate.
    r18 = Workbench(SeedOptions("resnet18"))
    c18, m18 = r18.candidate([0, 0, 0, 0])
    export_onnx(m18, (3, 224, 224), work / "resnet18.onnx")
    r18m, _ = _profile_all([("resnet18", work / "resnet18.onnx")], target)
    gflops_r18 = 2 * c18.macs / (r18m["resnet18"].latency.p50_ms / 1000) / 1e9
    mm = _matmul_gflops(threads)
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": threads, "seed": "cifar-resnet56 (../shared)", "candidates": len(cands),
        "export_s_per_candidate_median": statistics.median(export_s),
        "profile_s_per_candidate": {"pass1": t1 / len(items), "pass2": t2 / len(items)},
        "stability": {"kendall_tau_pass1_vs_pass2": tau_runs, "median_cv": statistics.median(cvs)},
        "flops_vs_measured": {"kendall_tau": dis["kendall_tau"], "misordered_pairs": len(dis["misordered_pairs"]),
                              "pairs": dis["pairs"], "misordered_candidates": dis["misordered_candidates"]},
        "seed_latency_ms": {"onnxruntime_p50": run1[seed_id].latency.p50_ms, "pytorch_eager_median": eager,
                            "ort_speedup_vs_eager": eager / run1[seed_id].latency.p50_ms},
        "resnet18_224": {"macs": c18.macs, "ort_p50_ms": r18m["resnet18"].latency.p50_ms,
                         "achieved_gflops": gflops_r18, "matmul_gflops_1024": mm,
                         "fraction_of_matmul": gflops_r18 / mm},
        "per_candidate": [{"id": i, "ratios": cands[i].ratios, "params": cands[i].params, "macs": cands[i].macs,
                           "p50_ms_pass1": run1[i].latency.p50_ms, "p50_ms_pass2": run2[i].latency.p50_ms,
                           "cv_pass1": run1[i].latency.cv} for i in ids],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cpu_build.json").write_text(json.dumps(res, indent=2))
    (OUT / "cpu_build.md").write_text(_markdown(res))
    print(_markdown(res))
    return 0


def _markdown(r) -> str:
    s, f, sl, rn = r["stability"], r["flops_vs_measured"], r["seed_latency_ms"], r["resnet18_224"]
    lines = [
        f"# CPU build benchmark ({r['date']}, {r['machine']}, {r['threads']} threads)", "",
        f"Seed {r['seed']}, ratios {{0, 0.25, 0.5}} over 3 stage segments: {r['candidates']} candidates.", "",
        "| figure | value |", "|---|---|",
        f"| derive+export per candidate (median) | {r['export_s_per_candidate_median']:.2f} s |",
        f"| profile per candidate (pass 1 / pass 2) | {r['profile_s_per_candidate']['pass1']:.2f} s / "
        f"{r['profile_s_per_candidate']['pass2']:.2f} s |",
        f"| Kendall tau, p50 ranking pass 1 vs pass 2 | {s['kendall_tau_pass1_vs_pass2']:.3f} |",
        f"| median CV of latency | {s['median_cv']:.3f} |",
        f"| Kendall tau, MACs vs measured p50 | {f['kendall_tau']:.3f} |",
        f"| pairs mis-ordered by MACs (beyond 5% noise) | {f['misordered_pairs']} of {f['pairs']} |",
        f"| seed p50: ONNX Runtime / PyTorch eager | {sl['onnxruntime_p50']:.3f} ms / "
        f"{sl['pytorch_eager_median']:.3f} ms "
        f"({sl['ort_speedup_vs_eager']:.2f}x) |",
        f"| ResNet-18 224x224 on ORT | {rn['ort_p50_ms']:.1f} ms, {rn['achieved_gflops']:.1f} GFLOP/s |",
        f"| matmul 1024x1024 (torch) | {rn['matmul_gflops_1024']:.1f} GFLOP/s "
        f"(ResNet-18 reaches {rn['fraction_of_matmul']:.0%}) |", "",
        "Candidates mis-ordered by MACs: " + (", ".join(f["misordered_candidates"]) or "none"),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
