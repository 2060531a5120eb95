"""Which channels to keep (issue 44): group L1 against the data-aware criteria, all with reconstruction.

Per seed (cifar-resnet20 and cifar-resnet56 from ../shared), three networks - the 1.5x-class
r50-50-25 and two others, r25-25-25 and r50-50-50 - are derived through the product's own path
(``Workbench.calibrate(criterion=...)`` + ``Workbench.candidate``) with each criterion
(``--criterion l1|taylor|activation``), every one reconstructed on the same 512 calibration
images a build samples.  For each: the criterion's set-up seconds and seconds per network, test
top-1 before training on 5,000 test images, and after the same short fine-tune (8,000 images x
1 epoch, the product's lr and warm-up, shifts and flips, distilled from the seed as it came,
2 training seeds) on the same 5,000 test images.

Run alone on an idle machine:  .venv/bin/python benchmarks/criterion.py  [--smoke]
Writes benchmarks/results/criterion.{json,md}.
"""

from __future__ import annotations

import copy
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, T0, cifar, cifar_train_val, command, log, missing_shared, parser, publish

CRITERIA = ("l1", "taylor", "activation")
NETWORKS = ([0.5, 0.5, 0.25], [0.25, 0.25, 0.25], [0.5, 0.5, 0.5])
MODES = {"default": {"train": 8000, "epochs": 1, "seeds": 2, "test": 5000},
         "smoke": {"train": 256, "epochs": 1, "seeds": 1, "test": 200}}


def splits(spec, m: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Calibration images as a build samples them, the fine-tune subset, every other test image."""
    from scbp_edge.lab import BuildConfig

    rest, _ = cifar_train_val()
    test = cifar("test")
    take = lambda n, s: rest.subset(np.random.default_rng(s).permutation(len(rest))[:n])  # noqa: E731
    d: dict[str, torch.Tensor] = {}
    d["calib_x"], d["calib_y"] = take(BuildConfig().calib_images, 2).tensors(spec.mean, spec.std)
    d["x"], d["y"] = take(m["train"], 0).tensors(spec.mean, spec.std)
    tx, ty = test.tensors(spec.mean, spec.std)
    step = max(1, len(ty) // m["test"])
    d["tx"], d["ty"] = tx[::step][: m["test"]], ty[::step][: m["test"]]
    return d


def run_seed(name: str, m: dict[str, Any], criteria: list[str]) -> dict[str, Any]:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import WARMUP, BuildConfig, evaluate, train

    lr = BuildConfig().lr
    wb = Workbench(SeedOptions(name, str(SHARED / "seeds/cifar10-resnet" / SEEDS[name])))
    d = splits(wb.seed.spec, m)
    teacher = copy.deepcopy(wb.seed.model).eval()
    out: dict[str, Any] = {"seed": name, "seed_test": evaluate(teacher, d["tx"], d["ty"]), "criteria": {}}
    for crit in criteria:
        t = time.perf_counter()
        wb.calibrate(d["calib_x"], d["calib_y"], criterion=crit)
        rows = {"setup_s": round(time.perf_counter() - t, 2), "networks": {}}
        for ratios in NETWORKS:
            t = time.perf_counter()
            cand, model = wb.candidate(ratios)
            derive_s = time.perf_counter() - t
            start = wb.candidate(ratios, for_training=True)[1]  # as train_network starts
            after = []
            for s in range(m["seeds"]):
                torch.manual_seed(s)
                tuned = train(copy.deepcopy(start), d["x"], d["y"], epochs=m["epochs"], lr=lr, warmup=WARMUP,
                              flip=True, seed=s, teacher=teacher)
                after.append(evaluate(tuned, d["tx"], d["ty"]))
            rows["networks"][cand.id] = {"ratios": ratios, "params": cand.params, "seconds": round(derive_s, 2),
                                         "before": evaluate(model, d["tx"], d["ty"]), "after": after}
            log(f"{name} {crit} {cand.id}: before {rows['networks'][cand.id]['before']:.2f}, after {after}")
        out["criteria"][crit] = rows
    return out


def markdown(res: dict[str, Any]) -> str:
    s0 = res["settings"]
    lines = [f"# Channel criteria, all with reconstruction ({res['date']}, {res['machine']}, {res['threads']} "
             "threads)", "",
             "Each network derived through the product's path with `--criterion` l1 / taylor / activation, every one "
             "re-solved on the build's 512 calibration images. Test top-1 on "
             f"{s0['test']:,} test images before training, and after the same short fine-tune ({s0['train']:,} "
             f"images x {s0['epochs']} epoch, the product's lr and warm-up, shifts and flips, distilled from the "
             f"seed as it came; mean +- std over {s0['seeds']} training seeds). "
             f"Command: `{res['command']}`, alone on an idle machine; wall {res['wall_s'] / 60:.1f} min.", ""]
    for s in res["seeds"]:
        crits = list(s["criteria"])
        nets = list(next(iter(s["criteria"].values()))["networks"])
        lines += [f"## {s['seed']} (seed as it came: {s['seed_test']:.2f})", "",
                  "| network | " + " | ".join(f"{c}: before | {c}: after" for c in crits) + " |",
                  "|---|" + "---|---|" * len(crits)]
        for n in nets:
            cells = []
            for c in crits:
                r = s["criteria"][c]["networks"][n]
                mean, sd = statistics.mean(r["after"]), statistics.pstdev(r["after"])
                cells += [f"{r['before']:.2f}", f"{mean:.2f} +- {sd:.2f}"]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("| mean after | " + " | ".join(
            f"- | {statistics.mean(statistics.mean(r['after']) for r in s['criteria'][c]['networks'].values()):.2f}"
            for c in crits) + " |")
        lines += ["", "Cost: " + "; ".join(
            f"{c} set-up {s['criteria'][c]['setup_s']:.1f} s, derive + reconstruct per network (max) "
            f"{max(r['seconds'] for r in s['criteria'][c]['networks'].values()):.2f} s" for c in crits) + ".", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny settings, results under benchmarks/.work")
    ap.add_argument("--seeds", default=",".join(SEEDS))
    ap.add_argument("--criteria", default=",".join(CRITERIA))
    a = ap.parse_args()
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    m = MODES["smoke" if a.smoke else "default"]
    seeds = [run_seed(s, m, a.criteria.split(",")) for s in a.seeds.split(",")]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "settings": m, "seeds": seeds, "wall_s": time.perf_counter() - T0,
           "command": command()}
    out = ROOT / "benchmarks" / ".work" if a.smoke else OUT
    publish(out, "criterion", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
