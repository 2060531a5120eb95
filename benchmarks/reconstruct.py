"""Reconstruction and channel criteria (issue 26, items 1-2): cost, accuracy before training, after a fine-tune.

Per seed (cifar-resnet20 and cifar-resnet56 from ../shared), every network of
the stage space {0, 0.25, 0.5, 0.75}^3 is derived through the product's own
path (``Workbench.calibrate`` + ``Workbench.candidate``) in five variants:
group-L1 channels with inherited weights (before this change); L1, Taylor and
activation channels each followed by reconstruction on 512 training images
(every layer re-solved for the network as scored and shipped; the fine-tune
starts from the inherited classifier, the product's way); and L1 whose
fine-tune starts from the re-solved classifier too (a variant that measured worse).
For each: seconds per network, the adaptive-BN proxy on a 2,000-image
validation split (what the build scores with) and the test top-1 on 2,000 test
images of the same weights.  Then the 1.5x-class network r50-50-25 is fine-tuned alike in every variant
(8,000 images x 2 epochs at the recipe before this change, lr 0.02 cosine,
distilled from the seed, 2 training seeds) and scored on the 10,000-image test split.

Run alone on an idle machine:  .venv/bin/python benchmarks/reconstruct.py  [--smoke]
Writes benchmarks/results/reconstruct.{json,md}.
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
from _common import OUT, ROOT, SEEDS, SHARED, T0, cifar, command, log, missing_shared, parser, publish

# label -> (criterion, reconstruct, classifier re-solved too)
VARIANTS = {"l1, inherited (before)": ("l1", False, False), "l1 + reconstruction": ("l1", True, False),
            "l1 + reconstruction, classifier too": ("l1", True, True),
            "taylor + reconstruction": ("taylor", True, False),
            "activation + reconstruction": ("activation", True, False)}
RATIOS = "0,0.25,0.5,0.75"
TUNED = [[0.5, 0.5, 0.25]]  # cifar-resnet56's measured 1.5x pick (scbp_vs_peers.md)
MODES = {"default": {"train": 8000, "epochs": 2, "seeds": 2, "val": 2000, "test_before": 2000, "limit": None},
         "smoke": {"train": 256, "epochs": 1, "seeds": 1, "val": 200, "test_before": 200, "limit": 4}}


def splits(spec, m: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Calibration (512, as the build samples it), BN, fine-tune, validation and test tensors."""
    from scbp_edge.lab import split_val

    train = cifar("train")
    rest, val = split_val(train, 0.1, 0)
    test = cifar("test")
    rng = np.random.default_rng(0)
    d: dict[str, torch.Tensor] = {}
    d["calib_x"], d["calib_y"] = rest.subset(np.random.default_rng(2).permutation(len(rest))[:512]).tensors(
        spec.mean, spec.std)
    d["bn_x"], _ = rest.subset(np.random.default_rng(1).permutation(len(rest))[:1024]).tensors(spec.mean, spec.std)
    d["x"], d["y"] = rest.subset(rng.permutation(len(rest))[: m["train"]]).tensors(spec.mean, spec.std)
    d["val_x"], d["val_y"] = val.subset(rng.permutation(len(val))[: m["val"]]).tensors(spec.mean, spec.std)
    d["test_x"], d["test_y"] = test.tensors(spec.mean, spec.std)
    step = max(1, len(test) // m["test_before"])
    d["tb_x"], d["tb_y"] = d["test_x"][::step][: m["test_before"]], d["test_y"][::step][: m["test_before"]]
    return d


def before_training(wb, d: dict[str, torch.Tensor], ratios: list[float]) -> dict[str, Any]:
    """Derive (+ reconstruct, as calibrated), then the build's proxy and the test top-1 of the proxy's weights."""
    from scbp_edge.lab import ProxyData, evaluate, proxy_accuracy

    t = time.perf_counter()
    cand, model = wb.candidate(ratios)
    derive_s = time.perf_counter() - t
    proxy = proxy_accuracy(model, ProxyData(d["bn_x"], d["val_x"], d["val_y"], None), cand.params or 0, 1)
    rec = cand.extra["reconstruction"]
    return {"id": cand.id, "ratios": list(ratios), "params": cand.params, "macs": cand.macs,
            "seconds": round(derive_s, 3), "reconstruct_s": rec["seconds"], "proxy": proxy.value,
            "bn": proxy.bn, "test_before": evaluate(model, d["tb_x"], d["tb_y"]),
            "error_before": rec.get("error_before"), "error_after": rec.get("error_after")}


def product_recipe() -> dict[str, Any]:
    """The build's fine-tune defaults (learning rate, warm-up), with the CIFAR benchmarks' flips."""
    from scbp_edge.lab import WARMUP, BuildConfig

    return {"lr": BuildConfig().lr, "warmup": WARMUP, "flip": True}


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation of two lists (None under 3 points or where a list is constant)."""
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return None
    rho = spearmanr(xs, ys).statistic
    return None if rho != rho else float(rho)


def ranking(s: dict[str, Any]) -> list[str]:
    """Per variant: how well its proxy (and its test top-1 before training) ranks the networks after the fine-tune."""
    lines = []
    for label, v in s["variants"].items():
        rows = [r for r in v["rows"] if label in s["tuned"].get(r["id"], {})]
        after = [statistics.mean(s["tuned"][r["id"]][label]) for r in rows]
        rho_p = spearman([r["proxy"] for r in rows], after)
        rho_b = spearman([r["test_before"] for r in rows], after)
        f = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {label} | {len(rows)} | {f(rho_p)} | {f(rho_b)} | "
                     f"{statistics.mean(after):.2f} |" if rows else f"| {label} | 0 | n/a | n/a | - |")
    return lines


def run_seed(name: str, m: dict[str, Any], variants: dict[str, tuple[str, bool, bool]]) -> dict[str, Any]:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import evaluate, train

    ckpt = str(SHARED / "seeds/cifar10-resnet" / SEEDS[name])
    wb = Workbench(SeedOptions(name, ckpt))
    d = splits(wb.seed.spec, m)
    teacher = copy.deepcopy(wb.seed.model).eval()
    space = wb.space(RATIOS)  # every distinct network, the seed and uniform ones included
    if m["limit"]:  # a seeded sample that keeps the seed and the fine-tuned networks
        must = [c for c in space if not any(c.ratios) or list(c.ratios) in TUNED]
        rest = [c for c in space if c not in must]
        pick = np.random.default_rng(0).permutation(len(rest))[: max(0, m["limit"] - len(must))]
        space = must + [rest[i] for i in sorted(pick)]
    out: dict[str, Any] = {"seed": name, "networks": len(space), "variants": {}, "tuned": {}}
    seed_row = None
    head = wb.head_layers
    for label, (criterion, rec, classifier) in variants.items():
        t = time.perf_counter()
        wb.calibrate(d["calib_x"], d["calib_y"], criterion=criterion, reconstruct=rec)
        wb.head_layers = () if classifier else head  # the variant whose fine-tune starts from a re-solved classifier
        setup_s = time.perf_counter() - t
        rows = [before_training(wb, d, c.ratios) for c in space]
        seed_row = next(r for r in rows if not any(r["ratios"]))
        out["variants"][label] = {"setup_s": round(setup_s, 2), "rows": rows}
        log(f"{name} {label}: {len(rows)} networks, median {statistics.median(r['seconds'] for r in rows):.2f} s")
        tuned_ratios = [r["ratios"] for r in rows if any(r["ratios"])] if m.get("tune_all") else TUNED
        for ratios in tuned_ratios if m["seeds"] else ():
            key = next((r["id"] for r in rows if r["ratios"] == ratios), None)
            if key is None:
                continue
            accs, start = [], wb.candidate(ratios, for_training=True)[1]  # as train_network starts
            for s in range(m["seeds"]):
                torch.manual_seed(s)
                # --tune-all ranks networks under the product's recipe; otherwise the recipe before the change
                rc = product_recipe() if m.get("tune_all") else {"lr": 0.02, "warmup": 0.0, "flip": False}
                tuned = train(copy.deepcopy(start), d["x"], d["y"], epochs=m["epochs"], seed=s, teacher=teacher, **rc)
                accs.append(evaluate(tuned, d["test_x"], d["test_y"]))
            out["tuned"].setdefault(key, {})[label] = accs
            log(f"{name} {label}: {key} fine-tuned {accs}")
    out["seed_test_before"] = seed_row["test_before"] if seed_row else None
    out["seed_proxy"] = seed_row["proxy"] if seed_row else None
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Reconstruction and channel criteria ({res['date']}, {res['machine']})", "",
             ("Every network" if not res["settings"]["limit"] else f"A seeded sample of {res['settings']['limit']} "
              "networks (the seed and r50-50-25 always in it)") + " of the stage space {0, 0.25, 0.5, 0.75}^3 "
             f"(deduplicated) derived through the product's own path in {len(res['seeds'][0]['variants'])} variants; "
             "reconstruction on 512 training images (the build's `--calib-images`). "
             "Proxy: the build's adaptive-BN top-1 on 2,000 validation images (inherited or re-estimated BN, "
             "whichever scores better); before training: test top-1 of the same weights on 2,000 test images. "
             f"Command: `{res['command']}`, alone on an idle machine; wall {res['wall_s'] / 60:.1f} min.", ""]
    for s in res["seeds"]:
        lines += [f"## {s['seed']}", "", f"Seed: proxy {s['seed_proxy']:.2f}, test {s['seed_test_before']:.2f}.", "",
                  "| variant | s per network, derive + reconstruct (median, max) | proxy mean | proxy >= 70 % | "
                  "test before, mean | best 1.5x-class network (r50-50-25) test before | layer error after (mean) |",
                  "|---|---|---|---|---|---|---|"]
        for label, v in s["variants"].items():
            rows = [r for r in v["rows"] if any(r["ratios"])]
            sec = [r["seconds"] for r in rows]
            pick = next((f"{r['test_before']:.1f}" for r in rows if r["ratios"] == TUNED[0]), "-")
            errs = [r["error_after"] for r in rows if r["error_after"] is not None]
            err = f"{statistics.mean(errs):.3f}" if errs else "-"
            lines.append(f"| {label} | {statistics.median(sec):.2f}, {max(sec):.2f} | "
                         f"{statistics.mean(r['proxy'] for r in rows):.1f} | "
                         f"{sum(r['proxy'] >= 70 for r in rows)} of {len(rows)} | "
                         f"{statistics.mean(r['test_before'] for r in rows):.1f} | {pick} | {err} |")
        if not s["tuned"]:
            lines.append("")
            continue
        recipe = ("the product's recipe: lr {lr:g} with {warmup:.0%} warm-up, cosine, shifts and flips".format(
            **res["recipe"]) if res["settings"].get("tune_all") else "lr 0.02 cosine")
        lines += ["", f"After the same fine-tune ({res['settings']['train']:,} images x {res['settings']['epochs']} "
                  f"epochs, {recipe}, distilled from the seed; test top-1 on 10,000 images, mean +- std over "
                  f"{res['settings']['seeds']} training seeds):", "",
                  "| network | " + " | ".join(s["variants"]) + " |", "|---|" + "---|" * len(s["variants"])]
        for key, per in s["tuned"].items():
            cells = [f"{statistics.mean(per[v]):.2f} +- {statistics.pstdev(per[v]):.2f}" if v in per else "-"
                     for v in s["variants"]]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        if res["settings"].get("tune_all"):
            lines += ["", "How each variant's figures before training rank the networks after the fine-tune "
                      "(Spearman; the build fine-tunes the networks its proxy ranks first):", "",
                      "| variant | networks | proxy vs fine-tuned | test before vs fine-tuned | fine-tuned mean |",
                      "|---|---|---|---|---|", *ranking(s)]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny settings, results under benchmarks/.work")
    ap.add_argument("--seeds", default=",".join(SEEDS))
    ap.add_argument("--limit", type=int, default=None, help="at most this many networks of the space per seed "
                    "(a seeded sample that always holds the seed; the fine-tuned network is derived regardless)")
    ap.add_argument("--train-seeds", type=int, default=None, help="fine-tunes per variant (0: none, before-training "
                    "figures only)")
    ap.add_argument("--variants", default=None, help="comma-separated indices into VARIANTS, e.g. 0,1 (default: all)")
    ap.add_argument("--tune-all", action="store_true", help="fine-tune every network of the sample (product recipe) "
                    "and rank: each variant's proxy against the fine-tuned accuracy (issue 43)")
    ap.add_argument("--out", default="reconstruct", help="results name under benchmarks/results (.json, .md)")
    a = ap.parse_args()
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    mode = "smoke" if a.smoke else "default"
    m = dict(MODES[mode], limit=a.limit or MODES[mode]["limit"])
    if a.train_seeds is not None:
        m["seeds"] = a.train_seeds
    m["tune_all"] = a.tune_all
    labels = list(VARIANTS)
    variants = VARIANTS if not a.variants else {labels[int(i)]: VARIANTS[labels[int(i)]] for i in a.variants.split(",")}
    seeds = [run_seed(s, m, variants) for s in a.seeds.split(",")]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "settings": m, "seeds": seeds, "wall_s": time.perf_counter() - T0,
           "recipe": product_recipe(),
           "command": command()}
    out = ROOT / "benchmarks" / ".work" if a.smoke else OUT
    publish(out, f"{a.out}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
