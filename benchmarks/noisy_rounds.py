"""Honest speed-ups on a busy machine (issue 20): replay the noisy-rounds case for real.

The case: a seed's round medians were [2.2, 9.2, 10.0, 2.0, 10.0] ms because something else
used the cores for part of the measurement; pooled p50s then claimed 3.87x where an
independent timing gave about 1.2x.  Here the same happens on purpose: the seed and a
candidate (cifar-resnet56 and its 0.5,0.5,0.5 derivation, random weights: latency does not
depend on them) are measured on the cpu target
1. on the idle machine (the truth: the paired speed-up, candidate against seed round by round);
2. N times while six processes burn the cores in random bursts (0.2-1.5 s on, 0.2-1.5 s off),
   so that some rounds run on a fraction of a core and others do not.
For every noisy pass it records the round medians kept, how long the one-thread worker waited
for a core (its CPU time against the wall clock), whether the figures were flagged noisy, the
speed-up from pooled p50s and the paired speed-up the report uses.  Before round filtering
(commit history), the busy passes inflated the paired speed-up by up to 18 %.  Goal: the paired figure
stays within 10 % of the idle one.  Writes benchmarks/results/noisy_rounds.{json,md}.
Run alone on an idle machine:  .venv/bin/python benchmarks/noisy_rounds.py
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OUT, parser, publish


def _burn(seed: int, stop) -> None:
    """Busy in random bursts until ``stop`` is set: the 'something else' of a shared machine."""
    rng = random.Random(seed)
    while not stop.is_set():
        end = time.perf_counter() + rng.uniform(0.2, 1.5)
        while time.perf_counter() < end and not stop.is_set():
            sum(i * i for i in range(2000))
        stop.wait(rng.uniform(0.2, 1.5))


def measure(work: Path) -> dict[str, Any]:
    """One interleaved run of the seed and the candidate, paired against the seed."""
    from scbp_edge.lab import Item, load_target, measure_items, runtime_for

    target = load_target("cpu")
    got: dict[str, Any] = {}
    items = [Item("seed", work / "seed.onnx"), Item("candidate", work / "candidate.onnx")]
    measure_items(items, target, runtime_for(target), [], chunk=8, reference=Item("reference", work / "seed.onnx"),
                  on_result=lambda k, m, e: got.__setitem__(k, m))
    seed, cand = got["seed"], got["candidate"]
    return {"seed_rounds_ms": seed.latency.round_p50_ms, "candidate_rounds_ms": cand.latency.round_p50_ms,
            "seed_round_cv": seed.latency.round_cv, "waited": max(x or 0.0 for x in (seed.latency.waited,
                                                                                     cand.latency.waited)),
            "flagged_noisy": bool(seed.latency.noisy or cand.latency.noisy),
            "pooled_speedup": seed.latency.p50_ms / cand.latency.p50_ms,
            "paired_speedup": cand.paired.speedup if cand.paired else None,
            "paired_rounds": cand.paired.rounds if cand.paired else None}


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("-n", type=int, default=4, help="noisy passes")
    ap.add_argument("--hogs", type=int, default=6, help="processes burning CPU in bursts")
    a = ap.parse_args()
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import export_onnx

    t0 = time.perf_counter()
    wb = Workbench(SeedOptions("cifar-resnet56"))
    shape = tuple(wb.seed.spec.input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_onnx(wb.seed.model, shape, work / "seed.onnx")
        export_onnx(wb.candidate([0.5, 0.5, 0.5])[1], shape, work / "candidate.onnx")
        idle = measure(work)
        print(f"idle: {idle['paired_speedup']:.3f}x paired, {idle['pooled_speedup']:.3f}x pooled", flush=True)
        noisy = []
        for i in range(a.n):
            stop = mp.Event()
            hogs = [mp.Process(target=_burn, args=(100 * i + j, stop), daemon=True) for j in range(a.hogs)]
            for h in hogs:
                h.start()
            try:
                noisy.append(measure(work))
            finally:
                stop.set()
                for h in hogs:
                    h.join(5)
            n = noisy[-1]
            print(f"noisy {i + 1}: {n['paired_speedup']:.3f}x paired, {n['pooled_speedup']:.3f}x pooled, "
                  f"seed rounds {[round(x, 3) for x in n['seed_rounds_ms']]}", flush=True)
    truth = idle["paired_speedup"]
    for n in noisy:
        n["paired_error"] = n["paired_speedup"] / truth - 1
        n["pooled_error"] = n["pooled_speedup"] / truth - 1
    worst = max(abs(n["paired_error"]) for n in noisy)
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
           "command": "python benchmarks/noisy_rounds.py" + (f" -n {a.n}" if a.n != 4 else ""),
           "wall_min": (time.perf_counter() - t0) / 60, "hogs": a.hogs, "idle": idle, "noisy": noisy,
           "worst_paired_error": worst, "worst_pooled_error": max(abs(n["pooled_error"]) for n in noisy),
           "meets_goal": worst <= 0.10}
    publish(OUT, "noisy_rounds", res, markdown(res))
    return 0


def markdown(res: dict[str, Any]) -> str:
    idle = res["idle"]
    lines = ["# Speed-ups on a busy machine: paired rounds vs pooled p50s", "",
             f"{res['when']}, {res['machine']}, wall {res['wall_min']:.1f} min. Command: `{res['command']}` on an "
             f"otherwise idle machine; the noise is {res['hogs']} processes burning the 2 cores in random bursts.", "",
             "cifar-resnet56 seed vs its 0.5,0.5,0.5 derivation, cpu target (ONNX Runtime, 1 thread, 5 rounds).", "",
             "| pass | seed round p50s kept (ms) | waited for a core (max of kept rounds) | flagged noisy "
             "| pooled speed-up | paired speed-up | paired vs idle |",
             "|---|---|---|---|---|---|---|",
             f"| idle | {', '.join(f'{x:.3f}' for x in idle['seed_rounds_ms'])} | {100 * idle['waited']:.1f} % | "
             f"{idle['flagged_noisy']} | "
             f"{idle['pooled_speedup']:.3f}x | {idle['paired_speedup']:.3f}x | (truth) |"]
    for i, n in enumerate(res["noisy"], 1):
        lines.append(f"| busy {i} | {', '.join(f'{x:.3f}' for x in n['seed_rounds_ms'])} | {100 * n['waited']:.1f} % | "
                     f"{n['flagged_noisy']} | "
                     f"{n['pooled_speedup']:.3f}x ({100 * n['pooled_error']:+.1f} %) | {n['paired_speedup']:.3f}x | "
                     f"{100 * n['paired_error']:+.1f} % |")
    lines += ["", f"Worst paired error {100 * res['worst_paired_error']:.1f} % (pooled: "
              f"{100 * res['worst_pooled_error']:.1f} %). Goal (paired within 10 % of the idle figure): "
              f"**{'met' if res['meets_goal'] else 'not met'}**.", "",
              "Before the worker reported its CPU time (commit a503fbc, same benchmark with the same hogs), no busy "
              "pass was flagged and the paired speed-up was inflated by up to 18 %. How much the hogs move a 1.2 ms "
              "inference varies from run to run, so the product now detects the load itself - the share of each "
              "round the one-thread worker waited for a core - re-measures, sets busy rounds aside when 3 quiet ones "
              "remain, and otherwise flags the figures noisy (the report then says so in words)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
