"""Training speed on this machine: images/s of the fine-tuning loop, before and after the speed options.

For the shared pretrained cifar-resnet20 and -56 (and a 50 %-pruned resnet20),
on CIFAR-10-JPEG: fp32 NCHW (before) against channels_last, bf16 autocast
(on CPUs with native bf16) and both.  Each option is kept only if a short real
fine-tune reaches the same test accuracy as fp32 (within 0.5 pt).

Writes benchmarks/results/train_speed.{json,md}.  Run alone on an idle machine:
    .venv/bin/python benchmarks/train_speed.py
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from _common import OUT, SHARED, cifar, publish

OPTIONS = {"fp32 NCHW (before)": (False, False), "channels_last": (True, False), "bf16": (False, True),
           "channels_last + bf16": (True, True)}


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):  # no options: say what it does instead of starting a run
        print(__doc__)
        return 0
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import bf16_supported, evaluate, train

    if not (SHARED / "data/cifar10-jpeg/train.tar.gz").is_file():
        print("needs ../shared", file=sys.stderr)
        return 2
    torch.set_num_threads(torch.get_num_threads())
    train_set = cifar("train")
    test_set = cifar("test")
    rng = np.random.default_rng(0)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(),
                 "bf16_native": bf16_supported(), "speed": {}, "parity": {}}
    for name, ckpt, ratios in (("cifar-resnet20", "resnet20-12fca82f.th", [0, 0, 0]),
                               ("cifar-resnet56", "resnet56-4bfd9763.th", [0, 0, 0])):
        wb = Workbench(SeedOptions(name, str(SHARED / "seeds/cifar10-resnet" / ckpt)))
        x, y = train_set.subset(rng.permutation(len(train_set))[:1536]).tensors(wb.seed.spec.mean, wb.seed.spec.std)
        for opt, (cl, bf) in OPTIONS.items():
            _, model = wb.candidate(ratios)
            train(model, x[:256], y[:256], epochs=1, lr=0.01, channels_last=cl, bf16=bf)  # warm-up
            t = time.perf_counter()
            train(model, x, y, epochs=1, lr=0.01, channels_last=cl, bf16=bf)
            res["speed"].setdefault(name, {})[opt] = len(x) / (time.perf_counter() - t)
            print(name, opt, round(res["speed"][name][opt]), "img/s", flush=True)
    wb = Workbench(SeedOptions("cifar-resnet20", str(SHARED / "seeds/cifar10-resnet/resnet20-12fca82f.th")))
    x, y = train_set.subset(rng.permutation(len(train_set))[:8000]).tensors(wb.seed.spec.mean, wb.seed.spec.std)
    tx, ty = test_set.subset(rng.permutation(len(test_set))[:4000]).tensors(wb.seed.spec.mean, wb.seed.spec.std)
    for opt, (cl, bf) in OPTIONS.items():
        _, model = wb.candidate([0.5, 0.5, 0.5])
        torch.manual_seed(0)
        model = train(model, x, y, epochs=2, lr=0.02, channels_last=cl, bf16=bf)
        res["parity"][opt] = evaluate(model, tx, ty)
        print("parity", opt, res["parity"][opt], flush=True)
    publish(OUT, "train_speed", res, markdown(res))
    return 0


def markdown(r: dict) -> str:
    base = "fp32 NCHW (before)"
    lines = [f"# Training speed ({r['date']}, {r['threads']} threads, native bf16: {r['bf16_native']})", "",
             "Fine-tuning loop of scbp_edge.accuracy.train (SGD, batch 64, per-image shifts) on CIFAR-10-JPEG, "
             "one epoch over 1,536 images after a warm-up epoch. Command: `.venv/bin/python benchmarks/train_speed.py`"
             " on an idle machine.", "", "| seed | " + " | ".join(OPTIONS) + " |", "|---|" + "---|" * len(OPTIONS)]
    for name, sp in r["speed"].items():
        lines.append(f"| {name} | " + " | ".join(f"{sp[o]:.0f} img/s ({sp[o] / sp[base]:.2f}x)" for o in OPTIONS)
                     + " |")
    lines += ["", "Accuracy parity: cifar-resnet20 pruned 50 % in every stage, 2 epochs on 8,000 images, test top-1 "
              "on 4,000 test images:", "", "| option | test top-1 | vs fp32 |", "|---|---|---|"]
    for o, acc in r["parity"].items():
        lines.append(f"| {o} | {acc:.2f} | {acc - r['parity'][base]:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
