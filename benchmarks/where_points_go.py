"""Where cifar-resnet56's 1.5x pick loses its points (issue 38: an account of the missed accuracy goals).

The pick r50-50-25 (shared weights; ``--kind trained``: the seed first trained
on 44,000 images, from budget_curve.py's cache) derived as the build derives
it, channels by L1 and reconstructed on 512 training images:
1. per layer: each re-solved layer's relative output error against the seed,
   before and after reconstruction, on the calibration rows, summed up per
   segment, and the layers that stay worst;
2. per segment: the network with only that segment pruned at the pick's ratio:
   the share of the seed's MACs it removes, and its test top-1 before any
   training (reconstructed, the 10,000-image test split) against the seed's:
   which segment costs the most accuracy for the compute it saves.
Before-training accuracy is not the fine-tuned gap; it shows where the damage
starts, which is what the fine-tune has to repair in its budget.

Run alone:  .venv/bin/python benchmarks/where_points_go.py [--kind trained]   (about 3 minutes)
Writes benchmarks/results/where_points_go[_trained].{json,md}.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, T0, cifar, cifar_train_val, command, log, missing_shared, parser, publish

SEED = "cifar-resnet56"
CKPT = SEEDS[SEED]
PICK = [0.5, 0.5, 0.25]
TRAINED = ROOT / "benchmarks" / ".work" / "budget_curve" / "seed-trained-44000x3.pt"  # budget_curve.py makes it


def bench(kind: str):
    """The seed (as it came or trained), calibrated as a build calibrates; the test split as tensors."""
    from scbp_edge.api import SeedOptions, Workbench

    wb = Workbench(SeedOptions(SEED, str(SHARED / "seeds/cifar10-resnet" / CKPT)))
    if kind == "trained":  # before the deriver and its reconstruction targets exist
        wb.seed.model.load_state_dict(torch.load(TRAINED, weights_only=True))
    spec = wb.seed.spec
    rest, _ = cifar_train_val()
    cx, cy = rest.subset(np.random.default_rng(2).permutation(len(rest))[:512]).tensors(spec.mean, spec.std)
    wb.calibrate(cx, cy, criterion="l1")
    tx, ty = cifar("test").tensors(spec.mean, spec.std)
    return wb, tx, ty


def per_layer(wb) -> dict[str, Any]:
    """The pick's per-layer reconstruction errors, grouped by segment."""
    _, _, rec = wb.derive(PICK)  # as the build derives it, with the per-layer record the build does not store
    seg_of = {c: s.index for s in wb.segmentation.segments for c in s.convs}
    layers = [{"layer": n, "segment": seg_of.get(n), "before": b, "after": a} for n, (b, a) in rec.per_layer.items()]
    segs = []
    for s in wb.segmentation.segments:
        mine = [r for r in layers if r["segment"] == s.index]
        if mine:
            segs.append({"segment": s.index, "layers": len(mine),
                         "before": statistics.mean(r["before"] for r in mine),
                         "after": statistics.mean(r["after"] for r in mine),
                         "worst": max(mine, key=lambda r: r["after"])["layer"]})
    return {"layers": layers, "segments": segs, "kept_l1": rec.kept_l1, "seconds": rec.seconds}


def per_segment(wb, tx: torch.Tensor, ty: torch.Tensor) -> list[dict[str, Any]]:
    """Each segment pruned alone at the pick's ratio: MACs removed and test top-1 before training."""
    from scbp_edge.lab import evaluate

    seed_macs = wb.static([0.0] * len(PICK)).macs
    rows = []
    for s, r in enumerate(PICK):
        ratios = [r if i == s else 0.0 for i in range(len(PICK))]
        cand, model = wb.candidate(ratios)
        rows.append({"segment": s, "ratios": ratios, "macs_cut": 1 - cand.macs / seed_macs,
                     "test_before": evaluate(model, tx, ty)})
        log(f"segment {s} alone at {r}: {rows[-1]}")
    return rows


def markdown(res: dict[str, Any]) -> str:
    seed, pick = res["seed_test"], res["pick"]
    lines = [f"# Where the 1.5x pick loses its points ({res['date']}, {res['machine']})", "",
             f"{SEED}, {res['kind']} seed ({seed:.2f} % on the 10,000-image test split), pick "
             f"r{'-'.join(f'{r * 100:g}' for r in PICK)}: {pick['test_before']:.2f} % before training, "
             f"{pick['macs_cut']:.0%} of the MACs removed. Channels by L1, reconstructed on 512 training images. "
             f"Command: `{res['command']}`, alone; wall {res['wall_s'] / 60:.1f} min.", "",
             "## Per segment: each pruned alone at the pick's ratio", "",
             "| segment | ratio | MACs removed | test top-1 before training | vs the seed, pt | pt per 10 % of "
             "MACs removed |", "|---|---|---|---|---|---|"]
    for r in res["segments"]:
        diff = r["test_before"] - seed
        lines.append(f"| {r['segment']} | {PICK[r['segment']]:g} | {r['macs_cut']:.1%} | {r['test_before']:.2f} | "
                     f"{diff:+.2f} | {diff / max(r['macs_cut'] * 10, 1e-9):+.2f} |")
    lay = res["layers"]
    lines += ["", "## Per layer: relative output error against the seed (calibration rows)", "",
              "| segment | layers re-solved | mean error before | mean error after | worst layer after |",
              "|---|---|---|---|---|"]
    lines += [f"| {s['segment']} | {s['layers']} | {s['before']:.3f} | {s['after']:.3f} | {s['worst']} |"
              for s in lay["segments"]]
    worst = sorted(lay["layers"], key=lambda r: -r["after"])[:8]
    lines += ["", "Layers whose output stays furthest from the seed's after reconstruction:", "",
              "| layer | segment | error before | error after |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['segment']} | {r['before']:.3f} | {r['after']:.3f} |" for r in worst]
    if lay["kept_l1"]:
        lines += ["", "Kept their inherited weights: " + "; ".join(f"{k} ({v})" for k, v in lay["kept_l1"].items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--kind", choices=("shared", "trained"), default="shared")
    a = ap.parse_args()
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    if a.kind == "trained" and not TRAINED.is_file():
        print(f"--kind trained needs {TRAINED}: run benchmarks/budget_curve.py --kinds trained first", file=sys.stderr)
        return 2
    from scbp_edge.lab import evaluate

    torch.set_num_threads(2)
    wb, tx, ty = bench(a.kind)
    seed_test = evaluate(wb.seed.model, tx, ty)
    log(f"seed {seed_test:.2f} %; the pick's layers")
    layers = per_layer(wb)
    cand, model = wb.candidate(PICK)
    pick = {"test_before": evaluate(model, tx, ty), "macs_cut": 1 - cand.macs / wb.static([0.0] * 3).macs}
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "kind": a.kind, "seed_test": seed_test, "pick": pick, "layers": layers,
           "segments": per_segment(wb, tx, ty), "wall_s": time.perf_counter() - T0,
           "command": command()}
    stem = "where_points_go" + ("_trained" if a.kind == "trained" else "")
    publish(OUT, f"{stem}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
