"""Issue-18 benchmark: what a CPU build costs, how well it measures, and whether ``compare`` cries wolf.

Everything runs through the ``scbp-edge`` command a user runs, each in its own process:

* search: ``scbp-edge search --seed resnet50 --ratios 0,0.25,0.5`` (81 configurations, analytic costs),
  wall time and peak RSS; "before" is the same 81 configurations physically derived in one process,
  which is what ``search`` did before the costs came from the pruning plan.
* builds: PAIRS pairs of identical builds of the pretrained cifar-resnet56 (27 configurations, fp32,
  ``--data none``, the cpu target's default protocol), one after the other.  From them: derive+export
  and profile seconds per candidate (the build's own stage timings), Kendall tau between the two builds
  of each pair (p50 and paired speed-up), the spread of p50 across builds, and ties.
* gate: every pair through ``scbp-edge compare`` (0 regressions expected), then again with one
  candidate's latency replaced by that of a wider network measured in the same build, about 15 %
  slower (flagged expected).  The old rule (raw p50 beyond 5 % and an uncorrected Mann-Whitney test on
  round p50s) is applied to the same pairs for the "before".

Writes benchmarks/results/cpu_build.{json,md}.  Run alone on an idle machine:
    .venv/bin/python benchmarks/cpu_build.py [--pairs 10] [--skip-before]
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

from _common import OUT, ROOT, SHARED, parser

WORK = ROOT / "benchmarks" / ".work" / "cpu_build"
CKPT = SHARED / "seeds/cifar10-resnet/resnet56-4bfd9763.th"
CLI = [sys.executable, "-m", "scbp_edge.cli.main"]
PLANT = 0.15  # the slowdown the gate must catch
# the cpu target's [measure] settings before issue 18's protocol change
BEFORE_MEASURE = {"rounds": 5, "min_runs": 20, "min_seconds": 0.2, "warmup_seconds": 0.2}
BEFORE = r'''
import sys, time
from scbp_edge.api import SeedOptions, Workbench
wb = Workbench(SeedOptions("resnet50"))
n = 0
for c in wb.space("0,0.25,0.5"):
    wb.candidate(c.ratios)  # physical derivation: what search did before analytic costs
    n += 1
print(n)
'''


RSS_WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def timed_rss(argv: list[str]) -> tuple[float, float, str]:
    """Run a command; (wall seconds, its peak RSS in MB, stdout).  Stops the benchmark if it fails."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RSS_WRAP, *argv], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:6])} ... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.stdout


def search_section(skip_before: bool) -> dict:
    wall, rss, out = timed_rss(CLI + ["search", "--seed", "resnet50", "--ratios", "0,0.25,0.5", "--json"])
    res = {"configurations": len(json.loads(out)["candidates"]), "after": {"wall_s": wall, "peak_rss_mb": rss}}
    if not skip_before:
        wall, rss, out = timed_rss([sys.executable, "-c", BEFORE])
        res["before"] = {"wall_s": wall, "peak_rss_mb": rss, "derived": int(out.strip())}
    return res


def protocol_target(name: str, measure: dict[str, float]) -> str:
    """targets/cpu.toml with its [measure] settings overridden: a protocol variant is one TOML file."""
    text = (ROOT / "targets" / "cpu.toml").read_text()
    for key, value in measure.items():
        text = re.sub(rf"(?m)^{key} = [^#\n]*", f"{key} = {value}   ", text)
    path = WORK / f"cpu-{name}.toml"
    path.write_text(text)
    return str(path)


def one_build(tag: str, target: str = "cpu") -> dict:
    runs = WORK / tag
    wall, _, _ = timed_rss(CLI + ["build", "--seed", "cifar-resnet56", "--weights", str(CKPT), "--data", "none",
                                  "--precision", "fp32", "--runs", str(runs), "--target", target])
    run_dir = max(runs.iterdir())
    rep = json.loads((run_dir / "report.json").read_text())
    rep["_wall_s"], rep["_report"] = wall, str(run_dir / "report.json")
    return rep


def pass_stats(a: dict, b: dict) -> dict:
    """Stability between two builds: tau, spread of p50 across the two, overlapping intervals (ties)."""
    from scbp_edge.lab import kendall_tau

    pa, pb = ({p["id"]: p for p in r["points"]} for r in (a, b))
    ids = sorted(set(pa) & set(pb))
    cv2 = [statistics.pstdev([pa[i]["p50_ms"], pb[i]["p50_ms"]]) / statistics.mean([pa[i]["p50_ms"], pb[i]["p50_ms"]])
           for i in ids]
    pairs = list(combinations(ids, 2))
    resolved = [(x, y) for x, y in pairs if not _overlap(pa[x]["p50_interval_ms"], pa[y]["p50_interval_ms"])]
    agree = sum((pa[x]["p50_ms"] < pa[y]["p50_ms"]) == (pb[x]["p50_ms"] < pb[y]["p50_ms"]) for x, y in resolved)
    return {"candidates": len(ids),
            "tau_p50": kendall_tau([pa[i]["p50_ms"] for i in ids], [pb[i]["p50_ms"] for i in ids]),
            "tau_speedup": kendall_tau([pa[i]["speedup"] for i in ids], [pb[i]["speedup"] for i in ids]),
            "p50_cv_between_builds_median": statistics.median(cv2),
            "tied_pairs": len(pairs) - len(resolved), "pairs": len(pairs),
            "resolved_pairs_same_order": agree, "resolved_pairs": len(resolved)}


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def build_costs(rep: dict) -> dict:
    st, n = rep["stage_seconds"], len(rep["points"])
    twins = sum(len(c["static"].get("same_network_as", [])) for c in rep["candidates"])
    return {"candidates": n, "networks": len({p["network"] for p in rep["points"]}), "configurations": n + twins,
            "derive_export_s": st["derive"], "profile_s": st["profile"],
            "per_candidate_s": (st["derive"] + st["profile"]) / n, "build_wall_s": rep["_wall_s"],
            "inference_cv_median": statistics.median(p["cv"] for p in rep["points"]),
            "round_cv_median": statistics.median(_round_cv(p) for p in rep["points"]),
            "noisy": sum(bool(p.get("noisy")) for p in rep["points"])}


def _round_cv(p: dict) -> float:
    r = p["round_p50_ms"]
    return statistics.pstdev(r) / statistics.mean(r)


def plant(base: dict, cur: dict) -> tuple[dict, dict]:
    """Current report with the fastest candidate's latency replaced by a wider network's, ~PLANT slower."""
    pts = {p["id"]: p for p in cur["points"]}
    victim = max(base["points"], key=lambda p: p["speedup"])
    b_speed = victim["speedup"]
    wider = min((p for p in cur["points"] if p["id"] != victim["id"]),
                key=lambda p: abs(b_speed / p["speedup"] - 1 - PLANT))
    planted = json.loads(json.dumps(cur))
    for p in planted["points"]:
        if p["id"] == victim["id"]:
            for k in ("p50_ms", "p90_ms", "p50_interval_ms", "round_p50_ms", "speedup", "paired", "cv"):
                p[k] = pts[wider["id"]][k]
    info = {"candidate": victim["id"], "replaced_by": wider["id"], "slowdown": b_speed / wider["speedup"] - 1}
    return planted, info


def gate(base_path: str, cur: dict | str, tag: str) -> dict:
    """``scbp-edge compare`` of two reports (the current one as a path, or a planted copy to write)."""
    path = Path(cur) if isinstance(cur, str) else WORK / f"{tag}.json"
    if not isinstance(cur, str):
        path.write_text(json.dumps(cur))
    proc = subprocess.run(CLI + ["compare", base_path, str(path), "--json"], cwd=ROOT, capture_output=True,
                          text=True)
    deltas = json.loads(proc.stdout)["deltas"] if proc.stdout.strip() else []
    lat = [d for d in deltas if d["metric"] in ("p50_ms", "p90_ms")]
    return {"exit": proc.returncode, "regressions": [f"{d['candidate']} {d['metric']}" for d in deltas
                                                     if d["verdict"] == "regression"],
            "latency_metrics": len(lat), "metrics": len(deltas)}


def old_rule(base: dict, cur: dict, threshold: float = 0.05) -> list[str]:
    """The gate before issue 18: raw p50/p90 beyond 5 % and Mann-Whitney p < 0.05 on round p50s, uncorrected."""
    from scipy.stats import mannwhitneyu

    pb = {p["id"]: p for p in base["points"]}
    out = []
    for p in cur["points"]:
        b = pb.get(p["id"])
        if b is None:
            continue
        p_mw = mannwhitneyu(b["round_p50_ms"], p["round_p50_ms"], alternative="less").pvalue
        out += [f"{p['id']} {m}" for m in ("p50_ms", "p90_ms") if p[m] > b[m] * (1 + threshold) and p_mw < 0.05]
    return out


def run_pair(i: int, protocol: str, target: str) -> dict:
    a, b = one_build(f"{protocol}{i}-a", target), one_build(f"{protocol}{i}-b", target)
    out = {"protocol": protocol, "costs": [build_costs(a), build_costs(b)], "stability": pass_stats(a, b),
           "macs_vs_p50_tau": a["flops_vs_measured"]["kendall_tau"]}
    if protocol == "default":
        planted, info = plant(a, b)
        out["identical"] = {"new": gate(a["_report"], b["_report"], f"pair{i}"), "old": old_rule(a, b)}
        out["planted"] = {**info, "new": gate(a["_report"], planted, f"pair{i}-planted"), "old": old_rule(a, planted)}
    return out


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--pairs", type=int, default=10, help="pairs of identical builds, default protocol")
    ap.add_argument("--before-pairs", type=int, default=3, help="pairs with the protocol before issue 18")
    ap.add_argument("--skip-before", action="store_true", help="do not time the physical-derive search (3 min)")
    args = ap.parse_args()
    if not CKPT.is_file():
        print(f"needs {CKPT}", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    from scbp_edge.lab import load_target

    default = vars(load_target("cpu").measure)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "command": " ".join(["python", "benchmarks/cpu_build.py", *sys.argv[1:]]),
           "protocols": {"default": {k: default[k] for k in BEFORE_MEASURE}, "before": BEFORE_MEASURE},
           "search": search_section(args.skip_before), "pairs": []}
    runs = [("default", "cpu")] * args.pairs
    for i in range(args.before_pairs):  # interleaved, so both protocols see the same machine
        runs.insert(2 * i + 1, ("before", protocol_target("before", BEFORE_MEASURE)))
    for i, (name, target) in enumerate(runs):
        res["pairs"].append(run_pair(i, name, target))
        res["wall_min"] = (time.time() - t0) / 60
        write(res)
        print(f"pair {i + 1}/{len(runs)} ({name}) done", flush=True)
    print(markdown(res))
    return 0


def write(res: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    from scbp_edge.lab import write_results

    write_results(OUT, "cpu_build", res, markdown(res))


def _mm(xs: list[float], fmt: str) -> str:
    """median (min-max) of a list."""
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def markdown(r: dict) -> str:
    lines = [f"# CPU build benchmark ({r['date']}, {r['machine']}, wall {r.get('wall_min', 0):.0f} min)", "",
             f"Command: `.venv/bin/python {r['command'].split(' ', 1)[1]}` on an idle machine. Every figure below "
             "was measured in this one run, through the `scbp-edge` command; quoted 'old' figures are marked.", ""]
    lines += _search_md(r["search"])
    for name, ps in _by_protocol(r):
        lines += _builds_md(name, ps, r["protocols"][name])
    lines += _gate_md([p for p in r["pairs"] if p["protocol"] == "default"])
    return "\n".join(lines) + "\n"


def _by_protocol(r: dict) -> list[tuple[str, list[dict]]]:
    names = list(dict.fromkeys(p["protocol"] for p in r["pairs"]))
    return [(n, [p for p in r["pairs"] if p["protocol"] == n]) for n in names]


def _search_md(s: dict) -> list[str]:
    lines = [f"## Search: resnet50, ratios 0,0.25,0.5 ({s['configurations']} configurations)", "",
             "| | wall | peak RSS |", "|---|---|---|",
             f"| analytic costs (`scbp-edge search --seed resnet50 --ratios 0,0.25,0.5 --json`) | "
             f"{s['after']['wall_s']:.1f} s | {s['after']['peak_rss_mb']:.0f} MB |"]
    if s.get("before"):
        b = s["before"]
        lines.append(f"| before: every configuration derived physically, one process | {b['wall_s']:.1f} s | "
                     f"{b['peak_rss_mb']:.0f} MB |")
    return lines + ["| old `search`, quoted from issue 18 (machine busy) | 192 s | 3.3 GB |", "",
                    "Goal: <= 10 s and <= 1 GB.", ""]


def _builds_md(name: str, ps: list[dict], measure: dict) -> list[str]:
    costs = [c for p in ps for c in p["costs"]]
    st = [p["stability"] for p in ps]
    proto = ", ".join(f"{k} {v}" for k, v in measure.items())
    per = [c["per_candidate_s"] for c in costs]
    return [
        f"## Builds, {name} protocol ({proto}): cifar-resnet56 (../shared), 27 configurations, fp32, "
        f"{2 * len(ps)} builds", "",
        "Median (min-max) over the builds or pairs. Per candidate = (derive+export stage + profile stage) / "
        "measured candidates, from the build's own stage timings.", "",
        "| figure | value | goal | old (2026-11-25, quoted) |", "|---|---|---|---|",
        f"| candidates measured (distinct networks) | {costs[0]['candidates']} ({costs[0]['networks']}) | | 27 |",
        f"| derive+export per candidate | {_mm([c['derive_export_s'] / c['candidates'] for c in costs], '{:.2f}')} s"
        " | | 0.76 s |",
        f"| profile per candidate | {_mm([c['profile_s'] / c['candidates'] for c in costs], '{:.2f}')} s | | 1.23 s |",
        f"| derive+export+profile per measured network | {_mm(per, '{:.2f}')} s | <= 0.5 s | |",
        f"| derive+export+profile per configuration of the space ({costs[0].get('configurations')}; twins that "
        f"round to the same network are built once) | "
        f"{_mm([c['per_candidate_s'] * c['candidates'] / c['configurations'] for c in costs], '{:.2f}')} s | "
        "<= 0.5 s | 1.99 s |",
        f"| whole build command (start-up and reports included) | {_mm([c['build_wall_s'] for c in costs], '{:.1f}')}"
        " s | | |",
        f"| Kendall tau of p50, build A vs B | {_mm([x['tau_p50'] for x in st], '{:.3f}')} | >= 0.9 | 0.823 |",
        f"| Kendall tau of paired speed-up, A vs B | {_mm([x['tau_speedup'] for x in st], '{:.3f}')} | | |",
        f"| CV of a candidate's p50 between builds A and B (median over candidates) | "
        f"{_mm([100 * x['p50_cv_between_builds_median'] for x in st], '{:.2f}')} % | <= 3 % | |",
        f"| CV across a build's round p50s (median over candidates) | "
        f"{_mm([100 * c['round_cv_median'] for c in costs], '{:.2f}')} % | | |",
        f"| CV of single inferences (median over candidates) | "
        f"{_mm([100 * c['inference_cv_median'] for c in costs], '{:.2f}')} % | | 61.8 % (two threads) |",
        f"| pairs of candidates tied (p50 intervals overlap) in build A | "
        f"{_mm([x['tied_pairs'] for x in st], '{:.0f}')} of {st[0]['pairs']} | | |",
        f"| untied pairs that keep their order in build B | {sum(x['resolved_pairs_same_order'] for x in st)} of "
        f"{sum(x['resolved_pairs'] for x in st)} | | |",
        f"| Kendall tau, MACs vs measured p50 | {_mm([p['macs_vs_p50_tau'] for p in ps], '{:.3f}')} | | 0.623 |", "",
        f"Kendall tau of p50 per pair: {', '.join(f'{x:.3f}' for x in (s['tau_p50'] for s in st))}; "
        f"{sum(x['tau_p50'] >= 0.9 for x in st)} of {len(st)} pairs reach 0.9. Below it: "
        + ("; ".join(f"pair {i + 1} (tau {p['stability']['tau_p50']:.3f}, {p['stability']['tied_pairs']} tied pairs, "
                     f"{sum(c['noisy'] for c in p['costs'])} candidates flagged noisy)"
                     for i, p in enumerate(ps) if p["stability"]["tau_p50"] < 0.9) or "none") + ".", ""]


def _gate_md(ps: list[dict]) -> list[str]:
    n = len(ps)
    if not n:
        return []
    false_new = sum(p["identical"]["new"]["exit"] != 0 for p in ps)
    false_old = sum(bool(p["identical"]["old"]) for p in ps)
    caught_new = sum(f"{p['planted']['candidate']} p50_ms" in p["planted"]["new"]["regressions"] for p in ps)
    caught_old = sum(f"{p['planted']['candidate']} p50_ms" in p["planted"]["old"] for p in ps)
    lines = ["## Regression gate: `scbp-edge compare` (default --max-regression 5%), default protocol", "",
             "| | new gate (paired speed-up, Welch, Holm) | old rule (raw p50 > 5 %, Mann-Whitney, uncorrected) |",
             "|---|---|---|",
             f"| identical builds: pairs with a false regression | {false_new} of {n} | {false_old} of {n} |",
             f"| planted slowdown flagged (p50) | {caught_new} of {n} | {caught_old} of {n} |", "",
             f"Latency comparisons per pair: {ps[0]['identical']['new']['latency_metrics']} (of "
             f"{ps[0]['identical']['new']['metrics']} metrics). The planted slowdown: the fastest candidate's latency "
             "replaced by that of the wider network measured in the same build whose paired speed-up is closest to "
             f"{PLANT:.0%} slower; actual slowdowns {_mm([100 * p['planted']['slowdown'] for p in ps], '{:.1f}')} % "
             f"({', '.join(sorted({p['planted']['replaced_by'] for p in ps}))} for {ps[0]['planted']['candidate']}).",
             "", "Goal: 0 false regressions in 10 pairs, the planted slowdown flagged in every pair."]
    for i, p in enumerate(ps):
        extra = p["identical"]["new"]["regressions"] + ["old: " + x for x in p["identical"]["old"]]
        if extra:
            lines.append(f"- pair {i + 1}, identical builds flagged: {', '.join(extra)}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
