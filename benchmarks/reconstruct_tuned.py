"""Reconstruction after the build's fine-tune (issue 55): inherited weights, today's solve and the block-output solve.

Each network (one given with ``--ratios``, or the 1.25x/1.5x/2.0x picks of
``scbp_vs_peers`` with ``--picks``) is started several ways:

* ``inherited``: the L1 channels' weights as the surgery leaves them;
* ``solved, head re-solved``: every layer re-solved, the classifier too (the
  weights the proxy scores; what scbp_vs_peers fine-tuned before issue 55);
* ``solved, head inherited``: every layer but the classifier re-solved (how a
  build started a fine-tune before issue 55);
* ``solved, norms kept``: as that, then each solved conv feeding a BatchNorm
  given its inherited filter norms back, the norm's statistics scaled to match
  (the same function; reconstruct.KEEP_SCALE, the build's way since issue 55);
* ``block-output solve, norms kept``: as that, but each residual writer fitted to the
  seed's residual sum minus the pruned network's own shortcut (derive/residual.py);
* ``block-output solve, BN re-estimated``: as that, then every BatchNorm's statistics
  re-estimated on the build's 1,024 BN images (issue 55 step 2's "re-estimate
  BatchNorm statistics after the solve"; adaptive BN, as the proxy does it).
* ``block-output solve, ReLU-aware``: as the block-output solve, but each layer whose
  output a ReLU cuts (through its BatchNorm, or through the add it writes) is re-solved
  ten more times with the rows the seed's ReLU zeroes released wherever the fit is below
  the cut too (derive/relu.py; reconstruct.RELU_RELAX).
* ``ReLU-aware + few-shot distillation``: as that, then 50 Adam steps distilling the
  network from the seed on the same 512 unlabeled calibration images (derive/refine.py).

For each, before any training: test top-1 (10,000 images), the ridge strength
each layer ended with, rows per unknown, each layer's weight norm over its
inherited one, and the loss and gradient norm of the first steps (the build's
distillation loss, train-mode BN).  Then the build's fine-tune (8,000 images x
2 epochs, the product's recipe, distilled from the teacher a build would
choose), 3 training seeds.  Resumable: the teacher and each fine-tuned accuracy
are kept under benchmarks/.work/recon2x-<seed>/; the same command continues.

Run alone:  .venv/bin/python benchmarks/reconstruct_tuned.py --seed cifar-resnet56 --ratios 0.5,0.5,0.75
            .venv/bin/python benchmarks/reconstruct_tuned.py --seed cifar-resnet20 --picks
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, ROOT, SHARED, log, missing_shared, parser, publish
from scbp_vs_peers import SEEDS, Data, recipe  # noqa: E402

FIRST_STEPS = 20
REFINE = 50  # steps of the few-shot distillation variant (derive/refine.py's STEPS)
# label -> (reconstruct, for_training: the classifier head left inherited, residual writers against the block
# output, solved filters given their inherited norms back: reconstruct.KEEP_SCALE, BatchNorm statistics
# re-estimated after the solve, iterations of the ReLU-aware re-solve: reconstruct.RELU_RELAX, steps of the
# few-shot distillation after the solve: derive/refine.py)
VARIANTS = {"inherited": (False, False, False, False, False, 0, 0),
            "solved, head re-solved (scbp_vs_peers)": (True, False, False, False, False, 0, 0),
            "solved, head inherited (build)": (True, True, False, False, False, 0, 0),
            "solved, norms kept": (True, True, False, True, False, 0, 0),
            "block-output solve, norms kept": (True, True, True, True, False, 0, 0),
            "block-output solve, BN re-estimated": (True, True, True, True, True, 0, 0),
            "block-output solve, ReLU-aware": (True, True, True, True, False, 10, 0),
            "ReLU-aware + few-shot distillation": (True, True, True, True, False, 10, 50)}


def solved_with_ridge(wb, ratios: list[float], for_training: bool) -> tuple[Any, Any, dict[str, float]]:
    """``wb.derive`` with the ridge strength each layer ended with recorded (the solver's last call per layer)."""
    from scbp_edge.lab import reconstruct_module as rc

    chosen: dict[str, float] = {}
    calls: list[float] = []
    ridge, solver = rc._ridge, rc._solver

    def ridge_spy(gram, w0, alpha):
        calls.append(alpha)
        return ridge(gram, w0, alpha)

    def solver_spy(name, *a):
        hook = solver(name, *a)

        def wrapped(m, args):
            calls.clear()
            hook(m, args)
            if calls:
                chosen[name] = calls[-1]
        return wrapped

    rc._ridge, rc._solver = ridge_spy, solver_spy
    try:
        _, model, rec = wb.derive(ratios, for_training=for_training)
    finally:
        rc._ridge, rc._solver = ridge, solver
    return model, rec, chosen


def norms(model: torch.nn.Module, ref: torch.nn.Module) -> dict[str, float]:
    """Each conv/linear layer's weight norm over the same layer's inherited norm."""
    refs = dict(ref.named_modules())
    return {n: float(m.weight.detach().norm() / refs[n].weight.detach().norm().clamp(min=1e-12))
            for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}


def first_steps(model: torch.nn.Module, teacher: torch.nn.Module, d: Data, lr: float) -> list[dict[str, float]]:
    """Loss and gradient norm of the first steps of the build's loss (CE/2 + 16 KL/2 at T=4), SGD as train() sets it."""
    from torch.nn import functional as F

    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr * 0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(FIRST_STEPS):
        idx = torch.randint(len(d.x), (64,), generator=gen)
        xb, yb = d.x[idx], d.y[idx]
        logits = net(xb)
        with torch.no_grad():
            t = teacher(xb)
        ce = F.cross_entropy(logits, yb)
        kd = F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
        loss = 0.5 * ce + 8 * kd
        opt.zero_grad()
        loss.backward()
        gn = float(torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters() if p.grad is not None)))
        out.append({"step": i, "loss": float(loss.detach()), "ce": float(ce.detach()), "kd": float(kd.detach()),
                    "grad_norm": gn})
        opt.step()
    return out


def teacher_for(work: Path, seed_model: torch.nn.Module, d: Data, epochs: float
                ) -> tuple[torch.nn.Module, dict[str, float]]:
    """The build's teacher: the seed fine-tuned first where it beats the seed as it came on validation (cached)."""
    from scbp_edge.lab import better_teacher, train

    seed = copy.deepcopy(seed_model).eval()
    f = work / "tuned_seed.pt"
    if not f.is_file():
        rc = recipe()
        log("fine-tuning the seed once (the teacher candidate)")
        tuned = train(copy.deepcopy(seed), d.x, d.y, epochs=epochs, lr=rc["lr"], seed=0, warmup=rc["warmup"],
                      flip=rc["flip"])
        torch.save(tuned.state_dict(), f)
    tuned = copy.deepcopy(seed)
    tuned.load_state_dict(torch.load(f, weights_only=True))
    tuned.eval()
    return better_teacher(seed, tuned, d.val_x, d.val_y)


class Benches:
    """Workbenches per segmentation: plain (inherited), solved, and solved with the block-output writers."""

    def __init__(self, seed: str, d: Data | None = None) -> None:
        from scbp_edge.api import SeedOptions, Workbench

        self.ckpt, self.name, self.d = str(SHARED / "seeds/cifar10-resnet" / SEEDS[seed]), seed, d
        self.first = Workbench(SeedOptions(seed, self.ckpt))
        self.cache: dict[tuple[str, str], Any] = {}

    def get(self, segments: str, kind: str):
        from scbp_edge.api import SeedOptions, Workbench

        key = (segments, kind)
        if key not in self.cache:
            wb = Workbench(SeedOptions(self.name, self.ckpt, segments=segments), self.first.seed)
            if kind != "plain":
                wb.calibrate(self.d.calib_x, self.d.calib_y, criterion=recipe()["criterion"],
                             residual=kind != "solved", refine_steps=REFINE if kind == "refined" else 0)
            self.cache[key] = wb
        return self.cache[key]


def start(b: Benches, segments: str, ratios: list[float], label: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One starting point and its reconstruction diagnostics."""
    from scbp_edge.lab import evaluate
    from scbp_edge.lab import reconstruct_module as rc

    rec_on, for_training, residual, keep_scale, bn_restat, relax, refine = VARIANTS[label]
    inherited = b.get(segments, "plain").deriver.derive(ratios)
    if not rec_on:
        return inherited, {}
    wb = b.get(segments, "refined" if refine else "residual" if residual else "solved")
    rc.KEEP_SCALE, relax_was, rc.RELU_RELAX = keep_scale, rc.RELU_RELAX, relax
    try:
        model, rec, ridge = solved_with_ridge(wb, ratios, for_training)
        scored = wb.derive(ratios)[1] if for_training else model  # the weights the proxy scores: head re-solved
    finally:
        rc.KEEP_SCALE, rc.RELU_RELAX = True, relax_was
    rows = {n: len(s.n) for n, s in wb._targets.sites.items()}
    unknowns = {n: (m.weight[0].numel() + (m.bias is not None)) for n, m in model.named_modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    if bn_restat:
        from scbp_edge.lab import adapt_bn

        model, scored = adapt_bn(model, b.d.bn_x), adapt_bn(scored, b.d.bn_x)
    return model, {"ridge": ridge, "rows_per_unknown": {n: rows[n] / u for n, u in unknowns.items() if n in rows},
                   "test_scored": evaluate(scored, b.d.test_x, b.d.test_y),
                   "norm_ratio": norms(model, inherited), "per_layer_error": rec.per_layer,
                   "kept_inherited": rec.kept_l1, "residual": list(rec.residual),
                   "seconds": rec.seconds + (rec.refined.seconds if rec.refined else 0.0)}


def networks(a: argparse.Namespace) -> list[tuple[str, str, list[float]]]:
    """(budget label, segmentation, ratios) of each network to run."""
    if not a.picks:
        ratios = [float(r) for r in a.ratios.split(",")]
        return [("-", "stages" if len(ratios) == 3 else str(len(ratios)), ratios)]
    res = json.loads((ROOT / "benchmarks/results" / f"scbp_vs_peers_{a.seed}.json").read_text())
    out = []
    for b in res["seeds"][0]["budgets"]:
        if a.budgets and str(b["budget"]) not in a.budgets.split(","):
            continue
        ratios = [int(r) / 100 for r in b["scbp"]["config"].rsplit("_r", 1)[1].split("-")]
        out.append((f"{b['budget']}x", "stages" if len(ratios) == 3 else str(len(ratios)), ratios))
    return out


def run(a: argparse.Namespace) -> dict[str, Any]:
    from scbp_edge.lab import evaluate, train

    m = {"train_images": a.train_images, "val_images": 2000}
    b = Benches(a.seed)
    d = b.d = Data(m, b.first.seed.spec.mean, b.first.seed.spec.std)
    work = ROOT / "benchmarks" / ".work" / f"recon2x-{a.seed}"
    work.mkdir(parents=True, exist_ok=True)
    teacher, tscores = teacher_for(work, b.first.seed.model, d, a.epochs)
    rc = recipe()
    labels = [lb for i, lb in enumerate(VARIANTS) if not a.variants or str(i) in a.variants.split(",")]
    res: dict[str, Any] = {"seed": a.seed, "teacher_val": tscores, "networks": []}
    for budget, segments, ratios in networks(a):
        sf = work / f"state-{','.join(f'{r:g}' for r in ratios)}.json"
        state = json.loads(sf.read_text()) if sf.is_file() else {"tuned": {}, "wall_s": 0.0}
        net = {"budget": budget, "ratios": ratios, "variants": {}}
        for label in labels:
            model, diag = start(b, segments, ratios, label)
            row = {"test_before": evaluate(model, d.test_x, d.test_y), **diag,
                   "first_steps": first_steps(model, teacher, d, rc["lr"])}
            accs = state["tuned"].setdefault(label, [])
            for s in range(len(accs), a.train_seeds):
                t = time.perf_counter()
                tuned = train(copy.deepcopy(model), d.x, d.y, epochs=a.epochs, lr=rc["lr"], seed=s,
                              warmup=rc["warmup"], flip=rc["flip"], teacher=teacher)
                accs.append(evaluate(tuned, d.test_x, d.test_y))
                state["wall_s"] += time.perf_counter() - t
                sf.write_text(json.dumps(state))
                log(f"{ratios} {label}: seed {s} -> {accs[-1]:.2f} ({time.perf_counter() - t:.0f} s)")
            row["tuned"] = accs[: a.train_seeds]
            net["variants"][label] = row
        res["networks"].append(net)
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Reconstruction after the build's fine-tune: {res['seed']} ({res['date']}, {res['machine']})", "",
             f"Command: `{res['command']}`, alone on an idle machine. Fine-tune: {res['train_images']:,} images x "
             f"{res['epochs']:g} epochs, the product's recipe, distilled from the teacher a build chooses "
             f"(validation: {res['teacher_val']}); test top-1 on the 10,000-image test split. Before: the "
             "starting weights as they are; scored: the same solve with the classifier re-solved too (what the "
             "proxy scores and `derive --data` writes). Norm: each layer's weight norm over its inherited one "
             "(median, max). "
             "Step 0: the build's loss and gradient norm on the first batch (train-mode BN).", "",
             "| budget | network | start | before | scored | after (mean +- std) | per seed | norm median, max | "
             "step-0 loss, grad norm | solve s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for net in res["networks"]:
        cfg = "r" + "-".join(f"{round(r * 100)}" for r in net["ratios"])
        for label, r in net["variants"].items():
            t = r["tuned"]
            after = f"{statistics.mean(t):.2f} +- {statistics.pstdev(t):.2f}" if t else "-"
            nr = r.get("norm_ratio") or {}
            norm = f"{statistics.median(nr.values()):.2f}, {max(nr.values()):.2f}" if nr else "1, 1"
            fs = r["first_steps"][0]
            scored = f"{r['test_scored']:.2f}" if "test_scored" in r else "-"
            lines.append(f"| {net['budget']} | {cfg} | {label} | {r['test_before']:.2f} | {scored} | {after} | "
                         f"{', '.join(f'{v:.2f}' for v in t)} | {norm} | {fs['loss']:.2f}, {fs['grad_norm']:.1f} | "
                         f"{r.get('seconds', 0):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--seed", default="cifar-resnet56", choices=list(SEEDS))
    ap.add_argument("--ratios", default="0.5,0.5,0.75")
    ap.add_argument("--picks", action="store_true", help="the SCBP picks of scbp_vs_peers_<seed>.json instead")
    ap.add_argument("--budgets", default="", help="with --picks: only these budgets, e.g. 2.0 or 1.25,1.5")
    ap.add_argument("--variants", default="", help="indices into VARIANTS, e.g. 0,2,3 (default: all)")
    ap.add_argument("--train-seeds", type=int, default=3)
    ap.add_argument("--train-images", type=int, default=8000)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--out", default="", help="results name under benchmarks/results (default from the seed)")
    a = ap.parse_args()
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    res = run(a)
    res.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=platform.machine(),
               train_images=a.train_images, epochs=a.epochs,
               command="python benchmarks/reconstruct_tuned.py " + " ".join(sys.argv[1:]))
    publish(OUT, a.out or f"reconstruct_tuned_{a.seed}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
