"""The headline at a real fine-tune budget on this CPU (issue 26, item 4): 45,000 images x 5 epochs.

cifar-resnet56's 1.5x SCBP pick (read from scbp_vs_peers.py's default-mode
result, so it is the network that benchmark matched against the peers) and the
seed, one training seed each, with the product's recipe: the seed first,
plainly; then the pick, reconstructed as the build derives it and distilled from
the better of the seed and the seed fine-tuned; then, where --inherited, the
same pick with inherited weights alike.  Test top-1 on the 10,000-image test
split, before and after.

Run alone on an idle machine, after scbp_vs_peers.py:
    .venv/bin/python benchmarks/real_budget.py [--epochs 5] [--inherited]
Writes benchmarks/results/real_budget.{json,md}.  Resumable: each finished network's row (and
the fine-tuned seed, the teacher) is kept under benchmarks/.work, so a killed run re-run with
the same arguments trains only what is left.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, T0, cifar, log, parser, publish

CKPT = SEEDS["cifar-resnet56"]


def the_pick() -> tuple[str, list[float], int]:
    """The 1.5x SCBP pick of the default-mode peers run: its id, ratios and segment count."""
    res = json.loads((OUT / "scbp_vs_peers_cifar-resnet56.json").read_text())
    b = next(b for b in res["seeds"][0]["budgets"] if b["budget"] == 1.5 and b["scbp"])
    row = next(r for r in res["seeds"][0]["space"] if r["config"] == b["scbp"]["config"])
    return row["config"], row["ratios"], len(row["ratios"])


def main() -> int:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import WARMUP, BuildConfig, better_teacher, evaluate, split_val, train

    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--images", type=int, default=45000)
    ap.add_argument("--inherited", action="store_true", help="also the pick with inherited weights")
    a = ap.parse_args()
    torch.set_num_threads(2)
    key, ratios, nseg = the_pick()
    cfg = BuildConfig()
    opts = SeedOptions("cifar-resnet56", str(SHARED / "seeds/cifar10-resnet" / CKPT),
                       segments="stages" if nseg == 3 else str(nseg))
    wb, plain = Workbench(opts), None
    spec = wb.seed.spec
    train_set = cifar("train")
    rest, val = split_val(train_set, 0.1, 0)
    cx, cy = rest.subset(np.random.default_rng(2).permutation(len(rest))[: cfg.calib_images]).tensors(spec.mean,
                                                                                                     spec.std)
    x, y = rest.subset(np.random.default_rng(0).permutation(len(rest))[: a.images]).tensors(spec.mean, spec.std)
    vx, vy = val.tensors(spec.mean, spec.std)
    tx, ty = cifar("test").tensors(spec.mean, spec.std)
    rc = {"lr": cfg.lr, "warmup": WARMUP, "flip": True}
    work = ROOT / "benchmarks" / ".work" / f"real_budget-{a.images}x{a.epochs}"
    work.mkdir(parents=True, exist_ok=True)
    done = work / "rows.json"
    rows: dict[str, dict[str, Any]] = json.loads(done.read_text()) if done.is_file() else {}

    def tune(name: str, model: torch.nn.Module, teacher) -> torch.nn.Module | None:
        """Fine-tune one network (or reuse its finished row); returns the trained model when trained now."""
        if name in rows:
            log(f"{name}: finished in an earlier run: {rows[name]}")
            return None
        t = time.perf_counter()
        before = evaluate(model, tx, ty)
        torch.manual_seed(0)
        out = train(copy.deepcopy(model), x, y, epochs=a.epochs, lr=rc["lr"], warmup=rc["warmup"], flip=rc["flip"],
                    teacher=teacher, seed=0)
        rows[name] = {"before": before, "after": evaluate(out, tx, ty), "train_s": round(time.perf_counter() - t),
                      "params": sum(p.numel() for p in model.parameters())}
        done.write_text(json.dumps(rows, indent=2))
        log(f"{name}: {rows[name]}")
        return out

    seed = copy.deepcopy(wb.seed.model).eval()
    tuned_path = work / "seed-tuned.pt"
    tuned_seed = tune("seed", seed, None)
    if tuned_seed is not None:
        torch.save(tuned_seed.state_dict(), tuned_path)
    else:
        tuned_seed = copy.deepcopy(seed)
        tuned_seed.load_state_dict(torch.load(tuned_path, weights_only=True))
    tuned_seed.eval()
    teacher, scores = better_teacher(seed, tuned_seed, vx, vy)
    wb.calibrate(cx, cy, criterion=cfg.criterion)
    _, pick = wb.candidate(ratios)
    tune(key, pick, teacher)
    if a.inherited:
        plain = Workbench(opts, wb.seed)
        tune(f"{key}-inherited", plain.deriver.derive(ratios), teacher)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
           "threads": torch.get_num_threads(), "images": a.images, "epochs": a.epochs, "recipe": rc,
           "criterion": cfg.criterion, "pick": key, "teacher_validation": scores, "rows": rows,
           "wall_s": time.perf_counter() - T0,
           "command": f"python benchmarks/real_budget.py --epochs {a.epochs}" + (" --inherited" if a.inherited else "")
           + (f" --images {a.images}" if a.images != 45000 else "")}
    publish(OUT, "real_budget", res, markdown(res))
    return 0


def markdown(r: dict[str, Any]) -> str:
    s, tv = r["rows"]["seed"], r["teacher_validation"]
    ref = max(s["before"], s["after"])  # the seed reference: the better of the seed as it came and fine-tuned
    lines = [f"# The 1.5x pick at a real fine-tune budget on the CPU ({r['date']})", "",
             f"{r['machine']}, {r['threads']} threads, alone. {r['images']:,} training images x {r['epochs']} epochs, "
             f"one training seed, lr {r['recipe']['lr']}, {r['recipe']['warmup']:.0%} warm-up then cosine, shifts "
             f"and flips; pruned networks distilled from the better teacher by validation top-1 (seed "
             f"{tv['seed']:.2f} %, fine-tuned seed {tv['fine-tuned seed']:.2f} %). Test top-1 on the 10,000-image "
             f"test split. Command: `{r['command']}`; wall "
             f"{r['wall_s'] / 60:.1f} min. The seed reference: the better of the seed as it came and "
             f"fine-tuned ({ref:.2f} %).", "",
             "| network | params | before training | after | vs the seed reference | train time |",
             "|---|---|---|---|---|---|"]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['params']:,} | {row['before']:.2f} | {row['after']:.2f} | "
                     f"{row['after'] - ref:+.2f} | {row['train_s'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
