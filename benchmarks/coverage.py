"""Which seeds work: every torchvision classifier (or timm's CNN backbones) at a small input, as a new user would.

Per model, in its own process with a time bound: inspect (segments), one mixed
derivation (checked against the masked seed), ONNX export with its parity
check, and a short profile on ONNX Runtime.  Each model is 'works', 'refused'
(one clear line from scbp-edge) or 'fails' (anything else: a bug to fix).
Random weights; 64x64 input.

Writes benchmarks/results/coverage.{json,md}; the README's coverage table is
that Markdown.  Run: .venv/bin/python benchmarks/coverage.py [--size 64] [--only a,b]
``--family timm``: the timm CNNs of TIMM (``--seed timm-NAME``; needs timm), written
to coverage_timm.{json,md} with a bound of 60 s per model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from _common import OUT, ROOT, command, parser

#: timm CNNs a robotics team is likely to start from: detector backbones (CSP, Darknet, DLA, HRNet), mobile nets
#: (ghost modules, MobileNetV3, EfficientNet, LCNet, MixNet, FBNet, RexNet), RegNets, ResNet variants, RepVGG
TIMM = ("cspdarknet53", "cspresnet50", "cspresnext50", "darknet53", "dla34", "hrnet_w18_small", "ghostnet_100",
        "mobilenetv3_large_100", "mobilenetv3_small_100", "efficientnet_b0", "efficientnet_lite0", "lcnet_100",
        "mixnet_s", "fbnetc_100", "rexnet_100", "regnetx_016", "regnety_016", "resnet18d", "resnet50d",
        "resnext26ts", "seresnext26d_32x4d", "res2net50_26w_4s", "resnest14d", "repvgg_a0", "vovnet39a",
        "selecsls42b", "dpn68", "densenet121", "tinynet_a", "mnasnet_100",
        # more families: ConvNeXt, EfficientNetV2, GENet, CSP-Darknet 3, VoVNet-DW, SKNet, MobileOne, GhostNetV2,
        # RepGhost, HGNetV2, MobileNetV4, normalizer-free ResNet, Xception, RegNetZ, pre-activation ResNetV2
        "convnext_nano", "efficientnetv2_rw_t", "gernet_s", "cs3darknet_s", "ese_vovnet19b_dw", "skresnet18",
        "mobileone_s0", "ghostnetv2_100", "repghostnet_100", "hgnetv2_b0", "mobilenetv4_conv_small", "nf_resnet26",
        "xception41", "regnetz_b16", "resnetv2_50")
STEP = r'''
import json, sys, tempfile, time, traceback
from pathlib import Path
import torch
from scbp_edge.lab import ScbpError
start = time.perf_counter()
name, size = sys.argv[1], int(sys.argv[2])
res = {"model": name, "steps": {}}
step = "inspect"
try:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import export_onnx
    torch.manual_seed(0)
    t = start = time.perf_counter()
    wb = Workbench(SeedOptions(name, input_size=size))  # the product's own bound on tracing
    res["segments"] = wb.num_segments
    res["steps"]["inspect"] = round(time.perf_counter() - t, 1)
    step = "derive"
    t = time.perf_counter()
    wb.deriver
    res["analysis_s"] = round(time.perf_counter() - start, 1)  # blocks, then Torch-Pruning's channel groups
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
    from scbp_edge.lab import load_target, profile_one
    target = load_target("cpu")
    target.measure.rounds, target.measure.min_runs, target.measure.min_seconds = 2, 5, 0.05
    m = profile_one(path, target)
    res["p50_ms"] = m.latency.p50_ms
    res["steps"]["profile"] = round(time.perf_counter() - t, 1)
    res["status"] = "works"
except ScbpError as exc:
    res.update(status="refused", stage=step, why=str(exc)[:300])
    res.setdefault("analysis_s", round(time.perf_counter() - start, 1))
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
    what = "timm CNN backbones" if r.get("family") == "timm" else "torchvision classifiers"
    command = r.get("command", ".venv/bin/python benchmarks/coverage.py")
    lines = [f"# Seed coverage: {what} at {r['size']}x{r['size']} ({r['date']})", "",
             f"{counts['works']} work, {counts['refused']} are refused in one line, {counts['fails']} fail. Steps: "
             "inspect, one mixed derivation checked against the masked seed, ONNX export with parity, a short "
             f"profile. Random weights. Command: `{command}`.", "",
             "Where a model itself rejects the small input, it is checked again at the size its refusal names "
             "(the input column). Rows re-run later with `--only` carry their own date in coverage.json.", "",
             "Analysis s: finding the blocks and Torch-Pruning's channel groups (or the time until the refusal); "
             "the product bounds it at 30 s under 10 M parameters, 180 s above.", "",
             "| model | input | result | analysis s | masked check | params kept | frozen groups | why |",
             "|---|---|---|---|---|---|---|---|"]
    for x in r["models"]:
        why = "; ".join(w for w in (x.get("why"), x.get("small")) if w).replace("|", "/")
        lines.append(f"| {x['model']} | {x.get('size', r['size'])} | "
                     f"{x['status']}{' at ' + x['stage'] if x['status'] != 'works' else ''} | "
                     f"{x.get('analysis_s', '')} | {x.get('masked_check', '')} | {x.get('params_kept', '')} | "
                     f"{x.get('frozen_groups', '')} | "
                     f"{why[:160]} |")
    return "\n".join(lines) + "\n"


def check(name: str, size: int, timeout: float) -> dict:
    """One model at ``size``; if the model itself rejects that size, again at the size the refusal names."""
    res = run_one(name, size, timeout)
    res["size"] = size
    hint = re.search(r"--input-size (\d+)", res.get("why", "")) if res["status"] == "refused" else None
    if hint and res.get("stage") == "inspect" and int(hint.group(1)) != size:
        first = res
        res = run_one(name, int(hint.group(1)), timeout)
        res.update(size=int(hint.group(1)), small=f"at {size}x{size}: {first['why'][:120]}")
    res["date"] = time.strftime("%Y-%m-%d %H:%M")
    return res


def main() -> int:
    import torchvision

    ap = parser(__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--only", default="", help="re-run these models and update their rows of the saved table")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per model (300; 60 for timm)")
    ap.add_argument("--family", choices=("torchvision", "timm"), default="torchvision")
    args = ap.parse_args()
    timm = args.family == "timm"
    args.timeout = args.timeout or (60.0 if timm else 300.0)
    every = [f"timm-{n}" for n in TIMM] if timm else sorted(torchvision.models.list_models(module=torchvision.models))
    names = [n if n in every or not timm or n.startswith("timm-") else f"timm-{n}"  # --only ghostnet_100 works too
             for n in args.only.split(",")] if args.only else every
    stem = "coverage_timm" if timm else "coverage"
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "size": args.size, "models": [], "family": args.family,
           "command": command()}
    if args.only and (OUT / f"{stem}.json").is_file():
        res = json.loads((OUT / f"{stem}.json").read_text())
    for name in names:
        row = check(name, args.size, args.timeout)
        at = next((i for i, x in enumerate(res["models"]) if x["model"] == name), None)
        if at is None:
            res["models"].append(row)
        else:
            res["models"][at] = row
        print(f"{name}: {row['status']} at {row['size']} {row.get('stage', '')} {row.get('why', '')[:120]}",
              flush=True)
        _write(res, stem)  # after every model: a long run that is stopped keeps what it measured
    return 0


def _write(res: dict, stem: str = "coverage") -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    from scbp_edge.lab import write_results

    write_results(OUT, f"{stem}", res, markdown(res))
    marks = README_MARKS[stem]
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.find(marks[0]), text.find(marks[1])
    if 0 <= start < end:
        readme.write_text(text[: start + len(marks[0])] + "\n" + readme_table(res) + text[end:])


#: where each family's compact table goes in the README
README_MARKS = {"coverage": ("<!-- coverage:start -->", "<!-- coverage:end -->"),
                "coverage_timm": ("<!-- coverage-timm:start -->", "<!-- coverage-timm:end -->")}


def readme_table(r: dict) -> str:
    """The README's compact table: models with the same outcome on one row."""
    rows: dict[tuple[str, int, str], list[str]] = {}
    for x in r["models"]:
        why = (x.get("why") or "").split(";")[0].split(" (")[0] if x["status"] != "works" else ""
        rows.setdefault((x["status"], x.get("size", r["size"]), why), []).append(x["model"])
    counts = {s: sum(x["status"] == s for x in r["models"]) for s in ("works", "refused", "fails")}
    timm = r.get("family") == "timm"
    what, stem = ("timm CNN backbones", "coverage_timm") if timm else ("torchvision classifiers", "coverage")
    lines = [f"{len(r['models'])} {what}, random weights, {r['size']}x{r['size']} input unless "
             f"the model itself needs more: {counts['works']} work, {counts['refused']} are refused in one line, "
             f"{counts['fails']} fail (`benchmarks/results/{stem}.md` has every row, with its analysis time).", "",
             "| models | input | result |", "|---|---|---|"]
    for (status, size, why), names in sorted(rows.items(), key=lambda kv: (kv[0][0] != "works", kv[0][1])):
        lines.append(f"| {', '.join(names)} | {size} | {status}{': ' + why if why else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
