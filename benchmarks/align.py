"""Channel alignment per precision on the cpu target (issue 58 step 1): which width multiple makes pruned int8 fast?

cifar-resnet56 (pretrained weights from ../shared; latency does not depend on their values, but int8
calibration ranges are realistic), target cpu (ONNX Runtime, 1 thread, the target's own protocol).
A few SCBP networks of the stage space are derived with widths rounded to 8 and to 16 (a network
whose widths come out the same at both is kept once), exported in fp32 and in int8 (QDQ u8s8, the cpu
runtime's scheme, calibrated on 256 training images), and every model, the seed in both precisions
included, is measured in one interleaved run with paired speed-ups over the fp32 seed, ``--repeats``
times (medians).

The question: at which multiple does an int8 pruned network beat the int8 seed most often and by
most (VNNI kernels work on 16 int8 lanes of 4 bytes; a channel count that does not fill them may cost
more than it saves)?  Writes benchmarks/results/align.{json,md}.  Run alone on an idle machine:
    .venv/bin/python benchmarks/align.py
"""

from __future__ import annotations

import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, T0, cifar, command, log, missing_shared, parser, publish
from precision import vnni

SEED = "cifar-resnet56"
CKPT = SEEDS[SEED]
NETWORKS = ([0.5, 0.0, 0.0], [0.25, 0.25, 0.25], [0.0, 0.5, 0.25], [0.5, 0.5, 0.25], [0.25, 0.5, 0.5],
            [0.0, 0.25, 0.5])
MULTIPLES = (8, 16)


def widths(model: torch.nn.Module) -> list[int]:
    """Every convolution's output channels, in order: two networks with the same list are the same network."""
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def models(seed, work: Path, calib: np.ndarray) -> dict[str, dict[str, Any]]:
    """key -> {ratios, multiple, widths, fp32 path, int8 path, params}; the seed under 'seed'."""
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import export_onnx, quantize_int8

    ckpt = str(SHARED / "seeds/cifar10-resnet" / CKPT)
    benches = {k: Workbench(SeedOptions(SEED, ckpt, round_to=k), seed) for k in MULTIPLES}  # one analysis each
    shape = tuple(seed.spec.input_shape)
    out: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[int, ...], str] = {}
    todo = [("seed", [0.0, 0.0, 0.0], MULTIPLES[0])] + [(None, r, k) for r in NETWORKS for k in MULTIPLES]
    for key, ratios, k in todo:
        model = benches[k].deriver.derive(ratios)
        w = tuple(widths(model))
        key = key or f"r{'-'.join(str(round(r * 100)) for r in ratios)}@{k}"
        if w in seen:
            out[seen[w]].setdefault("same_as", []).append(key)
            continue
        seen[w] = key
        fp32 = work / f"{key}.onnx"
        export_onnx(model, shape, fp32)
        (work / f"{key}_int8.onnx").write_bytes(quantize_int8(fp32.read_bytes(), calib, "minmax", "u8s8"))
        out[key] = {"ratios": ratios, "multiple": k, "params": sum(p.numel() for p in model.parameters()),
                    "stage_widths": sorted(set(w)), "fp32": fp32, "int8": work / f"{key}_int8.onnx"}
    return out


def measure(nets: dict[str, dict[str, Any]], repeats: int) -> dict[str, dict[str, dict[str, Any]]]:
    """key -> precision -> median p50, p90 and paired speed-up over the fp32 seed of ``repeats`` interleaved runs."""
    runs = [_measure_once(nets) for _ in range(repeats)]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key in nets:
        for prec in ("fp32", "int8"):
            got = [r[key][prec] for r in runs if prec in r.get(key, {})]
            if got:
                out.setdefault(key, {})[prec] = {f: statistics.median(g[f] for g in got) for f in got[0]} | {
                    "speedups": [round(g["speedup"], 3) for g in got]}
    return out


def _measure_once(nets: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """key -> precision -> p50, p90, paired speed-up over the fp32 seed, from one interleaved run."""
    from scbp_edge.lab import Item, load_target, measure_items, runtime_for

    target = load_target("cpu")
    got: dict[str, dict[str, dict[str, float]]] = {}

    def on_result(name: str, meas, err) -> None:
        key, prec = name.rsplit("@@", 1)
        if meas is not None:
            got.setdefault(key, {})[prec] = {"p50_ms": meas.latency.p50_ms, "p90_ms": meas.latency.p90_ms,
                                             "speedup": meas.paired.speedup if meas.paired else float("nan")}
        else:
            log(f"{name} failed: {err}")

    items = [Item(f"{k}@@{p}", v[p], p) for k, v in nets.items() for p in ("fp32", "int8")]
    measure_items(items, target, runtime_for(target), [], chunk=8, on_result=on_result,
                  reference=Item("reference-seed", nets["seed"]["fp32"]))
    return got


def markdown(res: dict[str, Any]) -> str:
    rows = res["rows"]
    seed8 = rows["seed"]["int8"]["speedup"]
    lines = [f"# Channel alignment per precision: {SEED} on the cpu target ({res['when']})", "",
             f"Command: `{res['command']}`, alone on an idle machine; {res['wall_min']:.1f} min. CPU: {res['cpu']}. "
             f"{res['repeats']} interleaved runs of every model (the cpu target's protocol, 1 thread); medians; "
             "speed-up: paired against the fp32 seed timed beside each chunk. A network whose widths are the "
             "same at both multiples is listed once (`same as`). Widths: the distinct conv widths.", "",
             "| network | multiple | widths | params | fp32 p50 ms | fp32 speed-up | int8 p50 ms | int8 speed-up | "
             "int8 vs int8 seed |", "|---|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        f, q = r.get("fp32", {}), r.get("int8", {})
        same = f" (same as {', '.join(r['same_as'])})" if r.get("same_as") else ""
        lines.append(f"| {k}{same} | {r['multiple']} | {r['stage_widths']} | {r['params']:,} | "
                     f"{f.get('p50_ms', float('nan')):.3f} | {f.get('speedup', float('nan')):.2f}x | "
                     f"{q.get('p50_ms', float('nan')):.3f} | {q.get('speedup', float('nan')):.2f}x | "
                     f"{q.get('speedup', float('nan')) / seed8:.2f}x |")
    lines += ["", "## Per multiple", "", "| multiple | pruned networks | int8 faster than the int8 seed | "
              "median int8 speed-up over the int8 seed | fp32 faster than the fp32 seed |", "|---|---|---|---|---|"]
    for k, s in res["summary"].items():
        lines.append(f"| {k} | {s['networks']} | {s['int8_beats_int8_seed']} | {s['median_int8_vs_int8_seed']:.2f}x "
                     f"| {s['fp32_beats_fp32_seed']} |")
    return "\n".join(lines) + "\n"


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per multiple: how often and by how much its int8 networks beat the int8 seed (a shared one counts twice)."""
    seed8 = rows["seed"]["int8"]["speedup"]
    out = {}
    for k in MULTIPLES:
        mine = [r for key, r in rows.items() if key != "seed" and (r["multiple"] == k or any(
            s.endswith(f"@{k}") for s in r.get("same_as", [])))]
        rel = [r["int8"]["speedup"] / seed8 for r in mine if "int8" in r]
        out[str(k)] = {"networks": len(mine), "int8_beats_int8_seed": sum(v > 1 for v in rel),
                       "median_int8_vs_int8_seed": statistics.median(rel) if rel else float("nan"),
                       "fp32_beats_fp32_seed": sum(r["fp32"]["speedup"] > 1 for r in mine if "fp32" in r)}
    return out


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of the whole set (medians reported)")
    a = ap.parse_args()
    if a.repeats < 1:
        print(f"--repeats {a.repeats} must be at least 1", file=sys.stderr)
        return 2
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing advice, per model
    from scbp_edge.api import SeedOptions, Workbench

    seed = Workbench(SeedOptions(SEED, str(SHARED / "seeds/cifar10-resnet" / CKPT))).seed
    spec = seed.spec
    train = cifar("train")
    calib = train.subset(np.random.default_rng(2).permutation(len(train))[:256]).tensors(spec.mean, spec.std)[0]
    work = ROOT / "benchmarks" / ".work" / "align"
    work.mkdir(parents=True, exist_ok=True)
    nets = models(seed, work, calib.numpy())
    log(f"{len(nets)} distinct networks exported; measuring {2 * len(nets)} models, {a.repeats} interleaved runs")
    got = measure(nets, a.repeats)
    rows = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()} | got.get(k, {})
            for k, v in nets.items()}
    res = {"rows": rows, "cpu": vnni(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {platform.platform()}",
           "command": command(),
           "repeats": a.repeats}
    res["summary"] = summarize(rows)
    res["wall_min"] = (time.perf_counter() - T0) / 60
    publish(OUT, "align", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
