"""Do identical default builds agree?  Issue 21's goal: 5 default builds on an idle machine pick the
same model, and its reported speed-up varies by <= 5 %.  Issue 39's goals, from the same builds: at
most 1 candidate per build flagged as measured while busy, and no two candidates whose p50s differ by
more than 10 % share a latency rank in the report.

Runs ``scbp-edge build --target cpu`` (the README's main job, embedded default seed and digits) N
times, one after another, each a fresh process and a fresh run directory, and records what each
selected, its paired speed-up over the seed and p50, and the seed's p50.  Writes
benchmarks/results/reproducibility.{json,md}.  Run alone:  .venv/bin/python benchmarks/reproducibility.py
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OUT, ROOT, parser, publish

CLI = [sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", "cpu", "--json"]


def one_build(runs: Path) -> dict[str, Any]:
    """One default build; what it picked and how fast that was, from its report.json."""
    t0 = time.perf_counter()
    res = subprocess.run([*CLI, "--runs", str(runs)], capture_output=True, text=True, cwd=ROOT, check=False)
    if res.returncode != 0:
        raise SystemExit(f"build failed (exit {res.returncode}): {res.stderr.strip()[-400:]}")
    from scbp_edge.lab import typed_report

    rep = typed_report(json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text()))
    pts = {p.id: p for p in rep.points}
    sel = rep.selection.id
    seed = rep.seed_point
    return {"selected": sel, "speedup": pts[sel].speedup, "p50_ms": pts[sel].p50_ms,
            "seed_p50_ms": seed.p50_ms if seed else None, "wall_s": round(time.perf_counter() - t0, 1),
            "measured": rep.counts["measured"], "stage_seconds": rep.stage_seconds, **rank_figures(list(rep.points))}


def rank_figures(points: list[Any]) -> dict[str, Any]:
    """Busy-flagged candidates, distinct latency ranks, and tied pairs whose p50s differ by more than 10 %."""
    from scbp_edge.lab import speed_ranks

    pts = sorted((p for p in points if p.p50_ms), key=lambda p: p.p50_ms)
    ranks = speed_ranks(pts)
    wide = sum(1 for i, a in enumerate(pts) for j in range(i + 1, len(pts))
               if ranks[i] == ranks[j] and pts[j].p50_ms > 1.10 * a.p50_ms)
    return {"noisy": sum(1 for p in pts if p.noisy), "ranks": len(set(ranks)), "ranked": len(pts),
            "tied_beyond_10pct": wide, "p50_spread": pts[-1].p50_ms / pts[0].p50_ms if pts else None}


def summarize(builds: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the builds agree: one pick, and the spread of its speed-up (max/min - 1)."""
    picks = sorted({b["selected"] for b in builds})
    ups = [b["speedup"] for b in builds if b["speedup"]]
    spread = max(ups) / min(ups) - 1 if ups else None
    return {"picks": picks, "same_pick": len(picks) == 1, "speedup_spread": spread,
            "speedup_median": statistics.median(ups) if ups else None,
            "meets_goal": len(picks) == 1 and spread is not None and spread <= 0.05,
            "noisy_max": max(b["noisy"] for b in builds),
            "tied_beyond_10pct_max": max(b["tied_beyond_10pct"] for b in builds)}


def markdown(res: dict[str, Any]) -> str:
    s = res["summary"]
    lines = ["# Reproducibility of identical default builds", "",
             f"{res['when']}, {res['machine']}. Command: `{res['command']}` on an idle machine.", "",
             "| build | selected | speed-up vs seed (paired) | p50 ms | seed p50 ms | flagged busy | latency ranks "
             "(candidates; p50 max/min) | tied pairs > 10 % apart | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, b in enumerate(res["builds"], 1):
        lines.append(f"| {i} | {b['selected']} | {b['speedup']:.3f}x | {b['p50_ms']:.4f} | {b['seed_p50_ms']:.4f} | "
                     f"{b['noisy']} | {b['ranks']} ({b['ranked']}; {b['p50_spread']:.2f}x) | {b['tied_beyond_10pct']} "
                     f"| {b['wall_s']} |")
    spread = f"{100 * s['speedup_spread']:.1f} %" if s["speedup_spread"] is not None else "n/a"
    same = "the same model every time" if s["same_pick"] else "NOT the same"
    lines += ["", f"Picks: {', '.join(s['picks'])} ({same}); "
              f"speed-up spread (max/min - 1): {spread}. Goal (same pick, <= 5 %): "
              f"**{'met' if s['meets_goal'] else 'not met'}**.", "",
              f"Most candidates flagged busy in one build: {s['noisy_max']} (goal <= 1: "
              f"**{'met' if s['noisy_max'] <= 1 else 'not met'}**). Most tied pairs whose p50s differ by more "
              f"than 10 %: {s['tied_beyond_10pct_max']} (goal 0: "
              f"**{'met' if s['tied_beyond_10pct_max'] == 0 else 'not met'}**)."]
    stages = {k: statistics.median(b["stage_seconds"].get(k, 0.0) for b in res["builds"])
              for k in dict.fromkeys(k for b in res["builds"] for k in b["stage_seconds"])}
    if stages:
        walls = statistics.median(b["wall_s"] for b in res["builds"])
        lines += ["", f"Where a build's time goes (median over the builds, s): wall {walls:.1f}, of which "
                  + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                  + "; the rest is start-up, the seed and data, the search, ranking and the report."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("-n", type=int, default=5, help="number of builds")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        builds = []
        for i in range(a.n):
            builds.append(one_build(Path(tmp) / f"b{i}"))
            print(f"build {i + 1}/{a.n}: {builds[-1]}", flush=True)
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {platform.platform()}",
           "command": "python benchmarks/reproducibility.py" + (f" -n {a.n}" if a.n != 5 else ""),
           "builds": builds, "summary": summarize(builds)}
    publish(OUT, "reproducibility", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
