"""The budget curve (issue 38, item 3): the 1.5x pick's gap to the seed after M minutes of fine-tuning.

cifar-resnet56's 1.5x SCBP pick (read from scbp_vs_peers.py's default-mode result), for two kinds of seed:
- ``shared``: the pretrained weights of ../shared as they came (they never saw the JPEG split);
- ``trained``: those weights first trained plainly on 44,000 training images (``--trained-epochs``
  epochs), as a user's seed already trained on their data would be; made once and cached under
  benchmarks/.work/budget_curve/.
For each kind and each budget of M minutes, as a build with ``--train-minutes`` spends it on one
network: the seed fine-tuned plainly for M minutes; the seed reference is the better of it and the
seed as it came (test top-1), the teacher the better on validation; then the pick, derived as the
build derives it (channels by group L1, re-solved on the calibration images), distilled for M
minutes.  Shifts and flips, the product's learning rate and warm-up, one training seed, test top-1
on the 10,000-image test split.

Run alone on an idle machine, in parts that each fit a sitting (each point costs about 2 x M
minutes, plus the trained seed once), e.g.:
    .venv/bin/python benchmarks/budget_curve.py --kinds shared --minutes 2,5
    .venv/bin/python benchmarks/budget_curve.py --kinds shared,trained --minutes 2,5,10,20
Resumable: finished points are kept in benchmarks/.work/budget_curve/rows.json and not redone; on a
fresh checkout the committed results' points are the starting set.
Writes benchmarks/results/budget_curve.{json,md,png} from every finished point.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, cifar, cifar_train_val, log, missing_shared, parser, trained_seed

WORK = ROOT / "benchmarks" / ".work" / "budget_curve"
CKPT = SEEDS["cifar-resnet56"]
KINDS = ("shared", "trained")


def the_pick() -> tuple[str, list[float]]:
    """The 1.5x SCBP pick of the default-mode cifar-resnet56 peers run: its id and ratios."""
    res = json.loads((OUT / "scbp_vs_peers_cifar-resnet56.json").read_text())
    b = next(b for b in res["seeds"][0]["budgets"] if b["budget"] == 1.5 and b["scbp"])
    row = next(r for r in res["seeds"][0]["space"] if r["config"] == b["scbp"]["config"])
    return row["config"], row["ratios"]


class Splits:
    """The shared CIFAR-10 JPEG splits as tensors: training, calibration, validation and test images."""

    def __init__(self, mean, std, images: int, calib: int) -> None:
        rest, val = cifar_train_val()
        take = lambda n, s: rest.subset(np.random.default_rng(s).permutation(len(rest))[:n])  # noqa: E731
        self.x, self.y = take(images, 0).tensors(mean, std)
        self.cx, self.cy = take(calib, 2).tensors(mean, std)  # as a build samples its calibration images
        self.vx, self.vy = val.tensors(mean, std)
        self.tx, self.ty = cifar("test").tensors(mean, std)


def point(kind: str, minutes: float, ratios: list[float], d: Splits, made: dict[str, Any] | None) -> dict[str, Any]:
    """One point of the curve: the seed and the pick, each fine-tuned for ``minutes``."""
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import WARMUP, BuildConfig, better_teacher, evaluate, fit

    cfg = BuildConfig()
    wb = Workbench(SeedOptions("cifar-resnet56", str(SHARED / "seeds/cifar10-resnet" / CKPT)))
    if made is not None:
        wb.seed.model.load_state_dict(made["state"])  # before the deriver and the reconstruction targets exist
    seed = wb.seed.model.eval()

    def tune(model: torch.nn.Module, teacher: torch.nn.Module | None) -> tuple[torch.nn.Module, dict[str, Any]]:
        torch.manual_seed(0)
        out, stats = fit(copy.deepcopy(model), d.x, d.y, epochs=1, lr=cfg.lr, warmup=WARMUP, flip=True, seed=0,
                         max_seconds=60 * minutes, teacher=teacher)
        return out.eval(), {"before": evaluate(model, d.tx, d.ty), "after": evaluate(out, d.tx, d.ty),
                            **dataclasses.asdict(stats)}

    tuned, seed_row = tune(seed, None)
    teacher, scores = better_teacher(seed, tuned, d.vx, d.vy)
    wb.calibrate(d.cx, d.cy, criterion=cfg.criterion)
    _, pick = wb.candidate(ratios)
    _, pick_row = tune(pick, teacher)
    ref = max(seed_row["before"], seed_row["after"])
    return {"kind": kind, "minutes": minutes, "seed": seed_row, "pick": pick_row, "reference": ref,
            "gap": pick_row["after"] - ref, "teacher_validation": scores,
            "seed_params": sum(p.numel() for p in seed.parameters()),
            "pick_params": sum(p.numel() for p in pick.parameters())}


def main() -> int:
    from scbp_edge.lab import BuildConfig

    ap = parser(__doc__)
    ap.add_argument("--kinds", default="shared", help="comma-separated of " + ",".join(KINDS))
    ap.add_argument("--minutes", default="2,5,10,20", help="fine-tune budgets per network, comma-separated")
    ap.add_argument("--trained-epochs", type=int, default=3, help="epochs of the 'trained' seed on 44,000 images")
    a = ap.parse_args()
    kinds, minutes = a.kinds.split(","), [float(m) for m in a.minutes.split(",")]
    if not set(kinds) <= set(KINDS) or not all(m > 0 for m in minutes):
        print(f"--kinds: of {', '.join(KINDS)}; --minutes: positive numbers", file=sys.stderr)
        return 2
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    WORK.mkdir(parents=True, exist_ok=True)
    done_path = WORK / "rows.json"
    done: dict[str, Any] = json.loads(done_path.read_text()) if done_path.is_file() else committed()
    key, ratios = the_pick()
    cfg = BuildConfig()
    from scbp_edge.api import SeedOptions, Workbench

    wb = Workbench(SeedOptions("cifar-resnet56", str(SHARED / "seeds/cifar10-resnet" / CKPT)))
    d = Splits(wb.seed.spec.mean, wb.seed.spec.std, 45000, cfg.calib_images)
    made = None
    for kind in kinds:
        if kind == "trained":
            made = trained_seed(wb.seed.model, d.x, d.y, d.tx, d.ty, images=44000, epochs=a.trained_epochs,
                                lr=cfg.lr, cache=WORK / f"seed-trained-44000x{a.trained_epochs}")
            log(f"trained seed: {made['test']:.2f} % test top-1")
        for m in minutes:
            name = f"{kind}-{m:g}"
            if name in done:
                log(f"{name}: finished in an earlier run (gap {done[name]['gap']:+.2f})")
                continue
            t = time.perf_counter()
            done[name] = dict(point(kind, m, ratios, d, made if kind == "trained" else None),
                              wall_s=round(time.perf_counter() - t))
            done_path.write_text(json.dumps(done, indent=2))
            log(f"{name}: seed {done[name]['seed']['after']:.2f}, pick {done[name]['pick']['after']:.2f}, "
                f"gap {done[name]['gap']:+.2f}")
    write(done, key, made)
    return 0


def committed() -> dict[str, Any]:
    """The points of the committed results: a fresh checkout (no .work folder) keeps them and adds to them."""
    path = OUT / "budget_curve.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    return {f"{r['kind']}-{r['minutes']:g}": r for r in rows}


def write(done: dict[str, Any], key: str, made: dict[str, Any] | None) -> None:
    """Results from every finished point (of this and earlier runs), a table and a plot."""
    rows = sorted(done.values(), key=lambda r: (r["kind"], r["minutes"]))
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "pick": key,
           "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
           "threads": torch.get_num_threads(), "rows": rows,
           "trained_seed": {k: v for k, v in made.items() if k != "state"} if made else next(
               (json.loads(f.read_text()) for f in sorted(WORK.glob("seed-trained-*.json"))), None),
           "command": "python benchmarks/budget_curve.py --kinds " + ",".join(dict.fromkeys(r["kind"] for r in rows))
           + " --minutes " + ",".join(dict.fromkeys(f"{r['minutes']:g}" for r in rows))}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "budget_curve.json").write_text(json.dumps(res, indent=2))
    lines = [f"# The 1.5x pick's gap to the seed against fine-tune minutes ({res['date']})", "",
             f"cifar-resnet56, pick {key}; {res['machine']}, {res['threads']} threads, alone. Each network "
             "fine-tuned for the minutes given on up to 45,000 images (lr and warm-up of the product, shifts and "
             "flips, one training seed); the pick distilled from the better teacher on validation. Seed reference: "
             "the better of the seed as it came and the seed fine-tuned for the same minutes. Test top-1 on the "
             f"10,000-image test split. Command: `{res['command']}` (in parts; each point kept when it ends).", "",
             "| seed | minutes | seed as it came | seed fine-tuned | pick before training | pick after | epochs "
             "(pick) | gap to the reference |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['minutes']:g} | {r['seed']['before']:.2f} | {r['seed']['after']:.2f} | "
                     f"{r['pick']['before']:.2f} | {r['pick']['after']:.2f} | {r['pick'].get('epochs', 0):.2f} | "
                     f"{r['gap']:+.2f} |")
    (OUT / "budget_curve.md").write_text("\n".join(lines) + "\n![budget curve](budget_curve.png)\n")
    plot(rows)
    print("\n".join(lines))


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind in dict.fromkeys(r["kind"] for r in rows):
        pts = [r for r in rows if r["kind"] == kind]
        ax.plot([r["minutes"] for r in pts], [r["gap"] for r in pts], "o-", label=f"{kind} seed")
    ax.axhline(-1.0, color="grey", ls="--", lw=1, label="goal: -1.0 pt")
    ax.set_xlabel("fine-tune minutes per network (this 2-core CPU)")
    ax.set_ylabel("pick - seed reference (pt)")
    ax.set_title("cifar-resnet56, 1.5x SCBP pick")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "budget_curve.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
