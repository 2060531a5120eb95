"""The fine-tune recipe (issue 26, item 3): learning rate and warm-up, the teacher, horizontal flips.

Per seed (cifar-resnet20 and cifar-resnet56 from ../shared), the 1.5x-class
network r50-50-25 derived and reconstructed as the build does, and the seed
itself, are fine-tuned on 8,000 training images x 2 epochs (scbp_vs_peers.py's
default budget), 2 training seeds, test top-1 on the 10,000-image test split:
1. learning rate {0.005, 0.01, 0.02, 0.05} with 5 % linear warm-up then cosine
   to zero, and 0.02 without warm-up (the recipe before this change); the
   pruned network distilled from the seed as it came, the seed trained plainly;
2. at the learning rate that served the pruned network best: distilled from
   the seed as it came vs from the seed fine-tuned alike (the build's new teacher);
3. the same with horizontal flips added to the shifts (``--augment flip``),
   for the pruned network and the seed.
Every pruned row is run twice: reconstructed (the default) and with inherited
weights (``--no-reconstruct``), since a fine-tune can undo what reconstruction did.
``--kind trained`` starts from the seed first trained on 44,000 training images
(3 epochs, the product's lr, flips; made once and cached under benchmarks/.work):
a user's seed has usually seen their data, and a change that helps the shared
pretrained seed need not help that one. The gap is to the seed reference: the
better of the seed as it came and the seed fine-tuned alike (what a user ships).

Run alone on an idle machine:  .venv/bin/python benchmarks/recipe.py  [--smoke]
Writes benchmarks/results/recipe.{json,md} (or ``--out`` NAME.{json,md}).
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
from _common import (
    OUT,
    ROOT,
    SEEDS,
    SHARED,
    T0,
    WORK,
    cifar,
    command,
    log,
    missing_shared,
    parser,
    publish,
    trained_seed,
)

PRUNED = [0.5, 0.5, 0.25]
SWEEP = [(0.005, 0.05), (0.01, 0.05), (0.02, 0.05), (0.05, 0.05), (0.02, 0.0)]  # (lr, warm-up share)
MODES = {"default": {"train": 8000, "epochs": 2, "seeds": 2, "trained": (44000, 3)},
         "smoke": {"train": 256, "epochs": 1, "seeds": 1, "trained": (256, 1)}}


class Bench:
    """One seed, its reconstructed 1.5x-class network, the data; fine-tunes with any recipe."""

    def __init__(self, name: str, m: dict[str, Any], criterion: str, kind: str = "shared") -> None:
        from scbp_edge.api import SeedOptions, Workbench
        from scbp_edge.lab import evaluate, split_val

        self.wb = Workbench(SeedOptions(name, str(SHARED / "seeds/cifar10-resnet" / SEEDS[name])))
        spec = self.wb.seed.spec
        train = cifar("train")
        rest, _ = split_val(train, 0.1, 0)
        self.tx, self.ty = cifar("test").tensors(spec.mean, spec.std)
        self.made = None
        if kind == "trained":
            from scbp_edge.lab import BuildConfig

            images, epochs = m["trained"]
            self.made = trained_seed(self.wb.seed.model, *rest.tensors(spec.mean, spec.std), self.tx, self.ty,
                                     images=images, epochs=epochs, lr=BuildConfig().lr,
                                     cache=WORK / "recipe" / f"{name}-trained-{images}x{epochs}")
        if self.made is not None:  # before the deriver and its reconstruction targets exist
            self.wb.seed.model.load_state_dict(self.made["state"])
        cx, cy = rest.subset(np.random.default_rng(2).permutation(len(rest))[:512]).tensors(spec.mean, spec.std)
        self.wb.calibrate(cx, cy, criterion=criterion)
        self.x, self.y = rest.subset(np.random.default_rng(0).permutation(len(rest))[: m["train"]]).tensors(
            spec.mean, spec.std)
        self.m = m
        self.seed = copy.deepcopy(self.wb.seed.model).eval()
        self.as_came = evaluate(self.seed, self.tx, self.ty)
        self.pruned = self.wb.candidate(PRUNED)[1]
        self.inherited = self.wb.deriver.derive(PRUNED)  # the same network without reconstruction
        self.tuned_seed: dict[tuple, torch.nn.Module] = {}

    def run(self, which: str, lr: float, warmup: float, teacher: str | None = None, flip: bool = False) -> list[float]:
        """Test top-1 per training seed; ``teacher``: None, 'seed' or 'fine-tuned seed' (same lr/warm-up/flip)."""
        from scbp_edge.lab import evaluate, train

        accs = []
        for s in range(self.m["seeds"]):
            t = None if teacher is None else self.seed if teacher == "seed" else self.tuned_seed[(lr, warmup, flip, s)]
            torch.manual_seed(s)
            start = {"pruned": self.pruned, "inherited": self.inherited, "seed": self.seed}[which]
            model = train(copy.deepcopy(start), self.x, self.y,
                          epochs=self.m["epochs"], lr=lr, seed=s, teacher=t, warmup=warmup, flip=flip)
            accs.append(evaluate(model, self.tx, self.ty))
            if which == "seed":
                self.tuned_seed[(lr, warmup, flip, s)] = model.eval()
        return accs


def run_seed(name: str, m: dict[str, Any], criterion: str, sweep: list[tuple[float, float]],
             inherited: bool, kind: str = "shared") -> dict[str, Any]:
    b = Bench(name, m, criterion, kind)
    rows: list[dict[str, Any]] = []

    def add(step: str, lr: float, warmup: float, teacher: str | None, flip: bool) -> dict[str, Any]:
        row = {"step": step, "lr": lr, "warmup": warmup, "teacher": teacher, "flip": flip,
               "seed": b.run("seed", lr, warmup, None, flip) if (lr, warmup, flip, 0) not in b.tuned_seed else None,
               "pruned": b.run("pruned", lr, warmup, teacher, flip),
               "inherited": b.run("inherited", lr, warmup, teacher, flip) if inherited else None}
        if row["seed"] is None:
            row["seed"] = next(r["seed"] for r in rows if (r["lr"], r["warmup"], r["flip"]) == (lr, warmup, flip))
        rows.append(row)
        log(f"{name} {step}: lr {lr} warm-up {warmup} teacher {teacher} flip {flip}: seed {row['seed']} "
            f"reconstructed {row['pruned']} inherited {row['inherited']}")
        return row

    for lr, warmup in sweep:
        add("sweep", lr, warmup, "seed", False)
    best = max((r for r in rows if r["warmup"] > 0), key=lambda r: statistics.mean(r["pruned"]))
    lr, warmup = best["lr"], best["warmup"]
    add("teacher", lr, warmup, "fine-tuned seed", False)
    add("flip", lr, warmup, "fine-tuned seed", True)
    made = None if b.made is None else {k: v for k, v in b.made.items() if k != "state"}
    return {"seed": name, "network": b.wb.static(PRUNED).id, "chosen_lr": lr, "chosen_warmup": warmup, "rows": rows,
            "kind": kind, "as_came": b.as_came, "trained_seed": made}


def _cell(v: list[float]) -> str:
    return f"{statistics.mean(v):.2f} +- {statistics.pstdev(v):.2f}"


def markdown(res: dict[str, Any]) -> str:
    s0 = res["settings"]
    lines = [f"# Fine-tune recipe ({res['date']}, {res['machine']}, {res['threads']} threads)", "",
             f"{s0['train']:,} training images x {s0['epochs']} epochs, SGD (momentum 0.9, nesterov, wd 5e-4), batch "
             f"64, per-image shifts; test top-1 on the 10,000-image test split, mean +- std over {s0['seeds']} "
             f"training seeds. Pruned network: r50-50-25, channels by {res['criterion']}, reconstructed on 512 "
             "training images; the seed is trained plainly with the same recipe. "
             f"Command: `{res['command']}`, alone on an idle machine; wall {res['wall_s'] / 60:.1f} min.", ""]
    for s in res["seeds"]:
        lines += [f"## {s['seed']} ({s['network']})", ""]
        if s.get("trained_seed"):
            t = s["trained_seed"]
            lines += [f"The seed was first trained on {t['images']:,} training images x {t['epochs']} epochs (lr "
                      f"{t['lr']}, flips; {t['train_s'] / 60:.1f} min, cached): {t['test']:.2f} % as it came.", ""]
        as_came = s.get("as_came")
        lines += ["| step | lr | warm-up | teacher | flips | seed fine-tuned | pruned, reconstructed | gap | pruned, "
                  "inherited weights | gap |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            ref = max(statistics.mean(r["seed"]), as_came or 0.0)  # what a user would ship: the better seed
            gap = statistics.mean(r["pruned"]) - ref
            gap2 = statistics.mean(r["inherited"]) - ref if r["inherited"] else None
            lines.append(f"| {r['step']} | {r['lr']} | {r['warmup']:.0%} | {r['teacher']} | "
                         f"{'yes' if r['flip'] else 'no'} | {_cell(r['seed'])} | {_cell(r['pruned'])} | {gap:+.2f} | "
                         + (f"{_cell(r['inherited'])} | {gap2:+.2f} |" if r["inherited"] else "- | - |"))
        lines += ["", f"Chosen by the sweep (best pruned mean with warm-up): lr {s['chosen_lr']}, warm-up "
                  f"{s['chosen_warmup']:.0%}."]
        if as_came is not None:
            lines.append(f"Gaps are to the seed reference, the better of the seed as it came ({as_came:.2f} %) and "
                         "the seed fine-tuned alike.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny settings, results under benchmarks/.work")
    ap.add_argument("--seeds", default=",".join(SEEDS))
    ap.add_argument("--criterion", default="l1", help="channel criterion of the pruned network")
    ap.add_argument("--sweep", default=",".join(f"{lr}:{w}" for lr, w in SWEEP),
                    help="lr:warm-up pairs of step 1, e.g. 0.02:0,0.02:0.05")
    ap.add_argument("--no-inherited", action="store_true", help="skip the pruned network with inherited weights "
                    "(benchmarks/reconstruct.py measures it)")
    ap.add_argument("--kind", choices=("shared", "trained"), default="shared",
                    help="the shared pretrained seed, or that seed first trained on 44,000 images (cached)")
    ap.add_argument("--out", default="recipe", help="results file stem under benchmarks/results "
                    "(recipe.md holds cifar-resnet20; recipe_cifar-resnet56.md the deeper seed)")
    a = ap.parse_args()
    sweep = [(float(lr), float(w)) for lr, w in (item.split(":") for item in a.sweep.split(","))]
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    m = MODES["smoke" if a.smoke else "default"]
    seeds = [run_seed(s, m, a.criterion, sweep, not a.no_inherited, a.kind) for s in a.seeds.split(",")]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "settings": m, "criterion": a.criterion, "seeds": seeds,
           "wall_s": time.perf_counter() - T0,
           "command": command()}
    out = ROOT / "benchmarks" / ".work" if a.smoke else OUT
    publish(out, f"{a.out}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
