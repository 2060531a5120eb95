"""Issue-7 benchmark: proxy evaluation of >= 16 candidates, local executor vs a local Ray cluster.

Same tasks, same inputs, same machine, one run; Ray's start-up is timed apart.
Writes benchmarks/results/ray_vs_local.{json,md}.
"""

from __future__ import annotations

import os
import sys
import time

from _common import OUT, publish


def _proxy(res) -> float | None:
    """The fp32 proxy of a task's result (None: the task or its fp32 variant failed)."""
    from scbp_edge.lab import DerivedNetwork

    if not isinstance(res, DerivedNetwork) or res.variants["fp32"].accuracy is None:
        return None
    return res.variants["fp32"].accuracy.value


def main() -> int:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import (
        DeriveContext,
        LocalExecutor,
        NetworkJob,
        ProxyData,
        RayExecutor,
        defaults,
        evaluate_network,
        load_digits_split,
        load_seed,
        seed_payload,
        split_val,
    )

    seed = load_seed(defaults.DEFAULT_SEED, defaults.default_seed_weights(), input_shape=defaults.DEFAULT_INPUT,
                     mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
    wb = Workbench(SeedOptions(defaults.DEFAULT_SEED, in_channels=1, input_size=16), seed)
    cands = wb.space("0,0.25,0.5,0.75")
    train, _ = load_digits_split(0)
    rest, val = split_val(train, 0.1, 0)
    bn_x, _ = rest.tensors(defaults.DIGITS_MEAN, defaults.DIGITS_STD)
    val_x, val_y = val.tensors(defaults.DIGITS_MEAN, defaults.DIGITS_STD)
    shared = DeriveContext(seed_payload(wb), ProxyData(bn_x[:256], val_x, val_y, bn_x[:64]), False, cands[0].params,
                           {"calibration": "minmax", "scheme": "u8s8"})
    jobs = [NetworkJob(c.id, tuple(c.ratios), ("fp32",)) for c in cands]
    res: dict[str, dict] = {}
    t = time.perf_counter()
    LocalExecutor().map(evaluate_network, jobs, shared, lambda k, r, e: res.setdefault("local", {}).__setitem__(
        k, _proxy(r)))
    local_s = time.perf_counter() - t
    t = time.perf_counter()
    ray_ex = RayExecutor(None, retries=2)
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    ray_ex.map(evaluate_network, jobs, shared, lambda k, r, e: res.setdefault("ray", {}).__setitem__(
        k, _proxy(r)))
    ray_s = time.perf_counter() - t
    same = res["local"] == res["ray"]
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "candidates": len(jobs),
           "local_s": local_s, "ray_s": ray_s, "ray_init_s": init_s, "speedup": local_s / ray_s,
           "speedup_with_init": local_s / (ray_s + init_s), "identical_proxy_results": same}
    md = "\n".join([
        f"# Ray vs local executor ({out['date']}, {out['cpus']} CPUs)", "",
        f"Proxy evaluation (derive + ONNX export + adaptive-BN top-1) of {len(jobs)} candidates of the embedded "
        "default seed, same tasks and inputs, one run.", "",
        "| executor | wall s |", "|---|---|",
        f"| local | {local_s:.1f} |", f"| ray (local cluster, 1 CPU per task) | {ray_s:.1f} |",
        f"| ray start-up | {init_s:.1f} |", "",
        f"Speed-up {out['speedup']:.2f}x ({out['speedup_with_init']:.2f}x counting Ray start-up); "
        f"identical proxy results: {same}.", ""])
    publish(OUT, "ray_vs_local", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
