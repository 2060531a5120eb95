"""The user's table at a real fine-tune budget (issue 58 step 2): the fastest model within 0.5, 1 and 2 points.

cifar-resnet56 from ../shared on this CPU, 45,000 training images x 5 epochs with the build's defaults
(reconstructed start with the classifier inherited, distillation from the better teacher by validation
top-1, lr, warm-up, shifts and flips).  The networks are the build's own picks at 1.25x, 1.5x and 2.0x
(the proxy's choice in ``scope_picks_cifar-resnet56.json``, scope ``both``, the default).  Each network is
scored on all 10,000 test images with a 95 % Wilson interval, in fp32 (PyTorch) and in int8 (ONNX Runtime,
the cpu runtime's u8s8 QDQ, calibrated on the build's 512 training images).

One network per part, each under 40 minutes alone; a finished part is kept under benchmarks/.work, so the
parts resume and run in any order once ``seed`` is done (it is the teacher, and the ``trained`` kind's start):
    .venv/bin/python benchmarks/users_table.py --part seed
    .venv/bin/python benchmarks/users_table.py --part 1.5      (and 1.25, 2.0)
    .venv/bin/python benchmarks/users_table.py --part measure  (fp32 and int8 of all, interleaved, cpu target)
``--kind trained`` prunes the seed after its own fine-tune instead of the checkpoint as it came.  Every part
rewrites benchmarks/results/users_table_<kind>.{json,md} from what is finished.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, cifar, command, log, missing_shared, parser, publish
from align import measure

SEED = "cifar-resnet56"
CKPT = SEEDS[SEED]
BUDGETS = ("1.25", "1.5", "2.0")
DROPS = (0.5, 1.0, 2.0)


def wilson(pct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy ``pct`` (%) measured on ``n`` images, in %."""
    p = pct / 100
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return round(100 * (mid - half), 2), round(100 * (mid + half), 2)


def the_pick(budget: str) -> tuple[str, list[float], list[str]]:
    """The build's own pick (the proxy's, scope both) at ``budget``: its name, ratios and scopes."""
    res = json.loads((OUT / f"scope_picks_{SEED}.json").read_text())
    pick = next(p for p in res["picks"] if p["budget"] == float(budget) and p["mode"] == "both")
    row = res["rows"][pick["scbp"]]
    return pick["scbp"], row["ratios"], row["scopes"]


def work_dir(images: int, epochs: float) -> Path:
    """Where the parts of one budget keep their rows, weights and ONNX files."""
    return ROOT / "benchmarks" / ".work" / f"users_table-{images}x{epochs:g}"


class Part:
    """The shared set-up of every part: the data, the seed kind, the finished rows and where they live."""

    def __init__(self, kind: str, images: int, epochs: int) -> None:
        from scbp_edge.lab import BuildConfig, split_val

        self.kind, self.images, self.epochs, self.cfg = kind, images, epochs, BuildConfig()
        self.work = work_dir(images, epochs)
        (self.work / kind).mkdir(parents=True, exist_ok=True)
        # the seed's rows are the same for both kinds; each kind has its own networks
        self.files = {"seed": self.work / "seed_rows.json", "networks": self.work / kind / "rows.json"}
        self.rows: dict[str, dict[str, Any]] = {}
        for f in self.files.values():
            self.rows.update(json.loads(f.read_text()) if f.is_file() else {})
        self.wb = self.bench(str(SHARED / "seeds/cifar10-resnet" / CKPT))
        spec = self.wb.seed.spec
        train_set = cifar("train")
        rest, val = split_val(train_set, self.cfg.val_fraction, 0)
        pick = np.random.default_rng(2).permutation(len(rest))[: self.cfg.calib_images]
        self.cx, self.cy = rest.subset(pick).tensors(spec.mean, spec.std)
        self.x, self.y = rest.subset(np.random.default_rng(0).permutation(len(rest))[:images]).tensors(
            spec.mean, spec.std)
        self.vx, self.vy = val.tensors(spec.mean, spec.std)
        self.tx, self.ty = cifar("test").tensors(spec.mean, spec.std)

    def bench(self, weights: str):
        from scbp_edge.lab import SeedOptions, Workbench

        return Workbench(SeedOptions(SEED, weights))

    def tuned_seed_path(self) -> Path:
        return self.work / "seed-fine-tuned.pt"

    def train(self, name: str, model: torch.nn.Module, teacher: torch.nn.Module | None, extra: dict) -> None:
        """Fine-tune ``model`` with the build's recipe, score it in fp32 and int8, keep its row and files."""
        from scbp_edge.lab import WARMUP, evaluate, train

        t = time.perf_counter()
        before = evaluate(model, self.tx, self.ty)
        torch.manual_seed(0)
        out = train(copy.deepcopy(model), self.x, self.y, epochs=self.epochs, lr=self.cfg.lr, warmup=WARMUP,
                    flip=True, teacher=teacher, seed=0).eval()
        self.rows[name] = {**extra, "before": before, **self.score(name, out), "train_s": round(
            time.perf_counter() - t), "params": sum(p.numel() for p in out.parameters())}
        torch.save(out.state_dict(), self.folder(name) / f"{name}.pt")
        self.save()
        log(f"{name}: {self.rows[name]}")

    def score(self, name: str, model: torch.nn.Module) -> dict[str, Any]:
        """Test top-1 with intervals in fp32 and int8; the two ONNX files are kept for the measure part."""
        from scbp_edge.lab import evaluate, evaluate_onnx, export_onnx, quantize_int8

        fp32 = self.folder(name) / f"{name}.onnx"
        export_onnx(model, tuple(self.wb.seed.spec.input_shape), fp32)
        int8 = quantize_int8(fp32.read_bytes(), self.cx.numpy(), self.cfg.calibration, "u8s8")
        (self.folder(name) / f"{name}_int8.onnx").write_bytes(int8)
        acc = {"fp32": evaluate(model, self.tx, self.ty), "int8": evaluate_onnx(int8, self.tx, self.ty)}
        n = len(self.ty)
        return {"test": acc, "interval": {k: wilson(v, n) for k, v in acc.items()}}

    def folder(self, name: str) -> Path:
        return self.work if name.startswith("seed-") else self.work / self.kind

    def save(self) -> None:
        for part, f in self.files.items():
            f.write_text(json.dumps({k: v for k, v in self.rows.items() if k.startswith("seed-") == (part == "seed")},
                                    indent=2))


def seed_part(p: Part) -> None:
    """The seed fine-tuned plainly (shared kind), and the seed as it came scored in both precisions."""
    if "seed-as-it-came" not in p.rows:
        p.rows["seed-as-it-came"] = {**p.score("seed-as-it-came", p.wb.seed.model.eval()), "params": sum(
            q.numel() for q in p.wb.seed.model.parameters())}
        p.save()
    if "seed-fine-tuned" not in p.rows:
        p.train("seed-fine-tuned", copy.deepcopy(p.wb.seed.model), None, {})


def network_part(p: Part, budget: str) -> None:
    """The build's pick at ``budget``: derived from the kind's seed, reconstructed, distilled, scored."""
    from scbp_edge.lab import better_teacher

    name, ratios, scopes = the_pick(budget)
    if name in p.rows:
        log(f"{name}: finished in an earlier run")
        return
    tuned = copy.deepcopy(p.wb.seed.model)
    tuned.load_state_dict(torch.load(p.tuned_seed_path(), weights_only=True))
    tuned.eval()
    teacher, scores = better_teacher(p.wb.seed.model.eval(), tuned, p.vx, p.vy)
    wb = p.wb if p.kind == "shared" else p.bench(str(p.tuned_seed_path()))
    wb.calibrate(p.cx, p.cy, criterion=p.cfg.criterion, reconstruct=p.cfg.reconstruct, residual=p.cfg.residual_solve)
    _, model = wb.candidate(ratios, for_training=True, scopes=scopes)
    p.train(name, model, teacher, {"budget": float(budget), "ratios": ratios, "scopes": scopes,
                                   "teacher_validation": scores})


def measure_part(p: Part, repeats: int) -> None:
    """fp32 and int8 of the seed and every finished network, interleaved on the cpu target (align.py's protocol)."""
    nets = {"seed": {q: p.work / f"seed-as-it-came{'_int8' if q == 'int8' else ''}.onnx" for q in ("fp32", "int8")}}
    nets |= {k: {q: p.folder(k) / f"{k}{'_int8' if q == 'int8' else ''}.onnx" for q in ("fp32", "int8")}
             for k in p.rows if not k.startswith("seed-")}
    log(f"measuring {2 * len(nets)} models, {repeats} interleaved runs")
    got = measure(nets, repeats)
    for k, speed in got.items():
        for name in (("seed-as-it-came", "seed-fine-tuned") if k == "seed" else (k,)):
            if name in p.rows:
                p.rows[name]["speed"] = speed
    p.save()


def table(p: Part) -> dict[str, Any]:
    """For each drop, the fastest model (either precision) within it of the seed reference."""
    seeds = [p.rows[k]["test"]["fp32"] for k in ("seed-as-it-came", "seed-fine-tuned") if k in p.rows]
    ref = max(seeds) if seeds else None
    models = [(k, q, r["test"][q], r["speed"][q]["speedup"]) for k, r in p.rows.items() for q in ("fp32", "int8")
              if "speed" in r and q in r["speed"]]
    best = {}
    for drop in DROPS:
        within = [m for m in models if ref is not None and m[2] >= ref - drop]
        best[str(drop)] = max(within, key=lambda m: m[3]) if within else None
    return {"reference": ref, "fastest_within": best}


def markdown(res: dict[str, Any]) -> str:
    ref = res["table"]["reference"]
    lines = [f"# The user's table: {SEED} at {res['images']:,} images x {res['epochs']} epochs ({res['kind']} seed, "
             f"{res['date']})", "",
             f"{res['machine']}, alone. Command of the last part: `{res['command']}`. The build's defaults; the "
             "networks are the build's own picks (the proxy's, scope both) from `scope_picks_cifar-resnet56.json`"
             + (" (picked on the shared seed: a build on the trained seed was not run to pick its own)"
                if res["kind"] == "trained" else "") + ". Test top-1 on 10,000 images with 95 % Wilson intervals; "
             "int8: u8s8 QDQ on ONNX Runtime. Speed-up: paired against the fp32 seed on the cpu target, median of "
             "the interleaved runs. The seed reference is the better of the seed as it came and fine-tuned"
             + (f": {ref:.2f} %." if ref is not None else " (not yet run)."), "",
             "| model | params | before training | fp32 top-1 | int8 top-1 | fp32 speed-up | int8 speed-up | "
             "train time |", "|---|---|---|---|---|---|---|---|"]
    for k, r in res["rows"].items():
        t, iv, sp = r["test"], r["interval"], r.get("speed", {})
        cell = {q: f"{t[q]:.2f} [{iv[q][0]:.2f}, {iv[q][1]:.2f}]" for q in ("fp32", "int8")}
        fast = {q: f"{sp[q]['speedup']:.2f}x" if q in sp else "not measured" for q in ("fp32", "int8")}
        before = f"{r['before']:.2f}" if "before" in r else "-"
        train = f"{r['train_s'] / 60:.1f} min" if "train_s" in r else "-"
        lines.append(f"| {k} | {r['params']:,} | {before} | {cell['fp32']} | {cell['int8']} | {fast['fp32']} | "
                     f"{fast['int8']} | {train} |")
    lines += ["", "| drop allowed | fastest model within it | top-1 | speed-up over the fp32 seed |",
              "|---|---|---|---|"]
    for drop, m in res["table"]["fastest_within"].items():
        lines.append(f"| {drop} pt | {m[0]} {m[1]} | {m[2]:.2f} | {m[3]:.2f}x |" if m else
                     f"| {drop} pt | not known yet (a part is missing) | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--part", required=True, choices=("seed", *BUDGETS, "measure"))
    ap.add_argument("--kind", default="shared", choices=("shared", "trained"),
                    help="prune the checkpoint as it came, or the seed after its own fine-tune")
    ap.add_argument("--images", type=int, default=45000)
    ap.add_argument("--epochs", type=float, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing runs of the measure part")
    a = ap.parse_args()
    for flag, value in (("--images", a.images), ("--epochs", a.epochs), ("--repeats", a.repeats)):
        if not value > 0:
            print(f"{flag} {value} must be positive", file=sys.stderr)
            return 2
    if a.part in BUDGETS and not (work_dir(a.images, a.epochs) / "seed-fine-tuned.pt").is_file():
        print(f"--part {a.part} needs the fine-tuned seed (its teacher): run --part seed first", file=sys.stderr)
        return 2
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing advice
    torch.set_num_threads(2)
    p = Part(a.kind, a.images, a.epochs)
    if a.part == "seed":
        seed_part(p)
    elif a.part == "measure":
        measure_part(p, a.repeats)
    else:
        network_part(p, a.part)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kind": a.kind, "images": a.images,
           "epochs": a.epochs, "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
           "command": command(), "rows": p.rows,
           "table": table(p)}
    publish(OUT, f"users_table_{a.kind}" + ("" if (a.images, a.epochs) == (45000, 5) else "_smoke"), res,
            markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
