"""Which CPU measurement protocol: rank stability vs time, for a few [measure] variants of the cpu target.

Each variant is one TOML file (targets/cpu.toml with its [measure] overridden); for each, PAIRS pairs of
identical cifar-resnet56 builds (27 configurations, fp32, --data none), variants interleaved pair by pair
so that all see the same machine.  Reported per pair: Kendall tau of p50 and of the paired speed-up
between the two builds, the p50 CV between them, tied pairs, noisy flags and seconds per candidate.
This is how the cpu target's protocol was chosen (issue 18); benchmarks/cpu_build.py then checks the
choice against the old protocol.

Writes benchmarks/results/cpu_protocols.{json,md}.  Run alone on an idle machine:
    .venv/bin/python benchmarks/cpu_protocols.py [--pairs 3] [--variants now,r5-20ms]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cpu_build as cb

VARIANTS: dict[str, dict[str, float]] = {
    "now": cb.BEFORE_MEASURE,  # the protocol before issue 18: 5 rounds of >= 0.2 s
    "r5-50ms": {"rounds": 5, "min_runs": 20, "min_seconds": 0.05, "warmup_seconds": 0.05},
    "r5-20ms": {"rounds": 5, "min_runs": 10, "min_seconds": 0.02, "warmup_seconds": 0.03},
    "r9-10ms": {"rounds": 9, "min_runs": 5, "min_seconds": 0.01, "warmup_seconds": 0.03},
}
CHOSEN = "r5-20ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    cb.WORK.mkdir(parents=True, exist_ok=True)
    names = args.variants.split(",")
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "variants": {n: VARIANTS[n] for n in names}, "pairs": {}}
    for i in range(args.pairs):
        for name in names:
            target = cb.protocol_target(name, VARIANTS[name])
            a, b = cb.one_build(f"proto-{name}-{i}a", target), cb.one_build(f"proto-{name}-{i}b", target)
            res["pairs"].setdefault(name, []).append({"stab": cb.pass_stats(a, b),
                                                      "costs": [cb.build_costs(a), cb.build_costs(b)]})
            from scbp_edge.lab import write_results

            write_results(cb.OUT, "cpu_protocols", res, markdown(res))
            print(f"{name} pair {i + 1} done", flush=True)
    return 0


def markdown(r: dict) -> str:
    lines = [f"# CPU measurement protocols ({r['date']})", "",
             "Command: `.venv/bin/python benchmarks/cpu_protocols.py` on an idle 2-core machine; pairs of identical "
             "cifar-resnet56 builds (27 configurations, 18 networks, fp32) per variant, variants interleaved. "
             "Each cell: one pair (min / median / max over pairs in the last column).", "",
             "| variant | rounds x min time (min runs), warm-up | Kendall tau p50 | tau speed-up | p50 CV between "
             "builds | tied pairs of 153 | noisy flags | s per network (derive+export+profile) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, ps in r["pairs"].items():
        v = r["variants"][name]
        per = [c["per_candidate_s"] for p in ps for c in p["costs"]]
        lines.append(
            f"| {name} | {v['rounds']} x {v['min_seconds'] * 1000:g} ms ({v['min_runs']}), "
            f"{v['warmup_seconds'] * 1000:g} ms | {_all([p['stab']['tau_p50'] for p in ps], '{:.3f}')} | "
            f"{_all([p['stab']['tau_speedup'] for p in ps], '{:.3f}')} | "
            f"{_all([100 * p['stab']['p50_cv_between_builds_median'] for p in ps], '{:.2f}')} % | "
            f"{_all([p['stab']['tied_pairs'] for p in ps], '{:d}')} | "
            f"{sum(c['noisy'] for p in ps for c in p['costs'])} | "
            f"{min(per):.2f} / {statistics.median(per):.2f} / {max(per):.2f} |")
    lines += ["", f"Chosen for the cpu target: {CHOSEN}, as stable as the 200 ms rounds at about a third of the time, "
              "with no noisy flag on an idle machine; 10 ms rounds started to flag idle rounds and to tie more pairs."]
    return "\n".join(lines) + "\n"


def _all(xs: list, fmt: str) -> str:
    return ", ".join(fmt.format(x) for x in xs)


if __name__ == "__main__":
    sys.exit(main())
