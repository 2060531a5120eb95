"""Which seeds work: every torchvision classifier at a small input, through the steps a new user takes.

Per model, in its own process with a time bound: inspect (segments), one mixed
derivation (checked against the masked seed), ONNX export with its parity
check, and a short profile on ONNX Runtime.  Each model is 'works', 'refused'
(one clear line from scbp-edge) or 'fails' (anything else: a bug to fix).
Random weights; 64x64 input.

Writes benchmarks/results/coverage.{json,md}; the README's coverage table is
that Markdown.  Run: .venv/bin/python benchmarks/coverage.py [--size 64] [--only a,b]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
STEP = r'''
import json, sys, tempfile, time, traceback
from pathlib import Path
import torch
from scbp_edge.errors import ScbpError
name, size = sys.argv[1], int(sys.argv[2])
res = {"model": name, "steps": {}}
step = "inspect"
try:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx
    torch.manual_seed(0)
    t = time.perf_counter()
    wb = Workbench(SeedOptions(name, input_size=size, trace_timeout=120))
    res["segments"] = wb.num_segments
    res["steps"]["inspect"] = round(time.perf_counter() - t, 1)
    step = "derive"
    t = time.perf_counter()
    ratios = [0.5 if i % 2 else 0.25 for i in range(wb.num_segments)]
    model = wb.deriver.derive(ratios, verify=False)
    err = wb.deriver.verify(model, wb.deriver.plan(ratios))
    res["masked_check"] = "n/a (a layer mixes channels)" if err is None else f"{err:.1e}"
    res["frozen_groups"] = len(wb.deriver.graph.frozen)
    res["params_kept"] = round(sum(p.numel() for p in model.parameters()) /
                               sum(p.numel() for p in wb.seed.model.parameters()), 3)
    res["steps"]["derive"] = round(time.perf_counter() - t, 1)
    step = "export"
    t = time.perf_counter()
    path = Path(tempfile.mkdtemp()) / "m.onnx"
    info = export_onnx(model, wb.seed.spec.input_shape, path)
    res["onnx_rel_diff"] = info.rel_diff
    res["steps"]["export"] = round(time.perf_counter() - t, 1)
    step = "profile"
    t = time.perf_counter()
    from scbp_edge.measure import profile_one
    from scbp_edge.targets import load_target
    target = load_target("cpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 2, 5, 0.05
    m = profile_one(path, target)
    res["p50_ms"] = m.latency.p50_ms
    res["steps"]["profile"] = round(time.perf_counter() - t, 1)
    res["status"] = "works"
except ScbpError as exc:
    res.update(status="refused", stage=step, why=str(exc)[:300])
except Exception as exc:
    res.update(status="fails", stage=step, why=f"{type(exc).__name__}: {str(exc)[:250]}",
               trace=traceback.format_exc()[-1500:])
print("RESULT " + json.dumps(res))
'''


def run_one(name: str, size: int, timeout: float) -> dict:
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", STEP, name, str(size)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"model": name, "status": "fails", "stage": "?", "why": f"no answer within {timeout:.0f} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"model": name, "status": "fails", "stage": "?", "why": (proc.stderr.strip() or "no output")[-300:]}
    res = json.loads(line[7:])
    res["wall_s"] = round(time.perf_counter() - t, 1)
    return res


def markdown(r: dict) -> str:
    counts = {s: sum(x["status"] == s for x in r["models"]) for s in ("works", "refused", "fails")}
    lines = [f"# Seed coverage: torchvision classifiers at {r['size']}x{r['size']} ({r['date']})", "",
             f"{counts['works']} work, {counts['refused']} are refused in one line, {counts['fails']} fail. Steps: "
             "inspect, one mixed derivation checked against the masked seed, ONNX export with parity, a short "
             "profile. Random weights. Command: `.venv/bin/python benchmarks/coverage.py`.", "",
             "| model | result | masked check | params kept | frozen groups | why |", "|---|---|---|---|---|---|"]
    for x in r["models"]:
        why = (x.get("why") or "").replace("|", "/")
        lines.append(f"| {x['model']} | {x['status']}{' at ' + x['stage'] if x['status'] != 'works' else ''} | "
                     f"{x.get('masked_check', '')} | {x.get('params_kept', '')} | {x.get('frozen_groups', '')} | "
                     f"{why[:160]} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    import torchvision

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    names = args.only.split(",") if args.only else sorted(torchvision.models.list_models(module=torchvision.models))
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "size": args.size, "models": []}
    for name in names:
        res["models"].append(run_one(name, args.size, args.timeout))
        x = res["models"][-1]
        print(f"{name}: {x['status']} {x.get('stage', '')} {x.get('why', '')[:120]}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.only:
        (OUT / "coverage.json").write_text(json.dumps(res, indent=2))
        (OUT / "coverage.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
