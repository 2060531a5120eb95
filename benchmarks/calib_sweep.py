"""How reconstruction moves with the number of calibration images, and what it costs (issue 43's sweep).

cifar-resnet56 (shared weights) and its 1.5x pick r50-50-25 by default
(``--seed``/``--pick`` for another), channels by L1, reconstructed on 128, 256,
512 (the build's ``--calib-images``) and 1,024 training images drawn as a build
draws them. Per count: seconds for the seed's
targets (one pass caching the seed's outputs) and for derive + reconstruct, the
peak resident memory above the process's before the step (sampled every 5 ms; each count
in a fresh process),
the layers solved with a stronger ridge (fewer samples than unknowns), the mean
relative output error after, and test top-1 before any training on the
10,000-image test split.

Run alone:  .venv/bin/python benchmarks/calib_sweep.py   (about 3 minutes)
Writes benchmarks/results/calib_sweep.{json,md} (calib_sweep_<seed>_<pick> for another network).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil
import torch
from _common import OUT, SEEDS, SHARED, T0, cifar, cifar_train_val, command, log, missing_shared, parser, publish

SEED, PICK = "cifar-resnet56", "0.5,0.5,0.25"
COUNTS = (128, 256, 512, 1024)


class PeakRss:
    """Peak resident memory of this process above its level on entry, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        self.proc, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = (self.peak - self.base) / 2**20


def _pick(text: str) -> list[float]:
    return [float(r) for r in text.split(",")]


def _name(ratios: list[float]) -> str:
    return "r" + "-".join(f"{r * 100:g}" for r in ratios)


def one(seed: str, pick: list[float], count: int, train, tx: torch.Tensor, ty: torch.Tensor) -> dict[str, Any]:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import evaluate

    segments = "stages" if len(pick) == 3 else str(len(pick))  # as benchmarks/reconstruct_tuned.py splits a pick
    wb = Workbench(SeedOptions(seed, str(SHARED / "seeds/cifar10-resnet" / SEEDS[seed]), segments=segments))
    spec = wb.seed.spec
    cx, cy = train.subset(np.random.default_rng(2).permutation(len(train))[:count]).tensors(spec.mean, spec.std)
    wb.deriver  # noqa: B018  (the dependency analysis, once, outside the timed steps)
    with PeakRss() as mem_t:
        t = time.perf_counter()
        wb.calibrate(cx, cy, criterion="l1")
        targets_s = time.perf_counter() - t
    with PeakRss() as mem_r:
        t = time.perf_counter()
        _, model, rec = wb.derive(pick)
        derive_s = time.perf_counter() - t
    row = {"images": count, "targets_s": targets_s, "derive_reconstruct_s": derive_s, "reconstruct_s": rec.seconds,
           "targets_peak_mb": mem_t.mb, "reconstruct_peak_mb": mem_r.mb, "layers": rec.layers,
           "strong_ridge": len(rec.strong_ridge), "kept_l1": len(rec.kept_l1), "error_before": rec.error_before,
           "error_after": rec.error_after, "test_before": evaluate(model, tx, ty)}
    log(f"{count} images: {row}")
    return row


def _fresh(seed: str, pick: str, count: int) -> dict[str, Any]:
    """One count in a fresh process: a peak-memory figure must not inherit the allocator of an earlier one."""
    out = subprocess.run([sys.executable, __file__, "--seed", seed, "--pick", pick, "--one", str(count)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Calibration images for reconstruction ({res['date']}, {res['machine']}, {res['threads']} threads)", "",
             f"{res['seed']} {_name(res['pick'])} (shared weights; the seed "
             f"{res['seed_test']:.2f} %), channels by L1, reconstructed on N training images; test top-1 before any "
             f"training on the 10,000-image test split. Command: `{res['command']}`, alone; wall "
             f"{res['wall_s'] / 60:.1f} min.", "",
             "| images | seed targets s | derive + reconstruct s | peak MB (targets) | peak MB (reconstruct) | "
             "stronger ridge | mean layer error after | test top-1 before training |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['images']:,} | {r['targets_s']:.2f} | {r['derive_reconstruct_s']:.2f} | "
                     f"{r['targets_peak_mb']:.0f} | {r['reconstruct_peak_mb']:.0f} | {r['strong_ridge']} of "
                     f"{r['layers']} | {r['error_after']:.3f} | {r['test_before']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)), help="calibration image counts")
    ap.add_argument("--seed", default=SEED, choices=sorted(SEEDS), help="the shared seed")
    ap.add_argument("--pick", default=PICK, help="the network's width modifiers, one per segment")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one count in this process; prints its row
    a = ap.parse_args()
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import evaluate

    torch.set_num_threads(2)
    pick = _pick(a.pick)
    seed = Workbench(SeedOptions(a.seed, str(SHARED / "seeds/cifar10-resnet" / SEEDS[a.seed]))).seed
    tx, ty = cifar("test").tensors(seed.spec.mean, seed.spec.std)
    if a.one:
        rest, _ = cifar_train_val()
        print(json.dumps(one(a.seed, pick, a.one, rest, tx, ty)))
        return 0
    rows = [_fresh(a.seed, a.pick, int(n)) for n in a.counts.split(",")]
    res = {"seed": a.seed, "pick": pick, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": platform.machine(),
           "threads": torch.get_num_threads(), "seed_test": evaluate(seed.model, tx, ty), "rows": rows,
           "wall_s": time.perf_counter() - T0,
           "command": command()}
    default = a.seed == SEED and pick == _pick(PICK)
    publish(OUT, "calib_sweep" if default else f"calib_sweep_{a.seed}_{_name(pick)}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
