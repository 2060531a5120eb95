"""Issue-4 benchmark: SCBP vs uniform width multipliers vs Torch-Pruning magnitude pruning.

Default mode fits this 2-core CPU (see MODES); ``--full`` is for GPU machines.
All accuracies are measured here; latencies come from one interleaved ONNX
Runtime profile of every compared model in the same run.
Writes benchmarks/results/scbp_vs_peers{,_full}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scbp_edge.profile.runner import Item

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results"
MODES = {
    "default": {"depth": 20, "ckpt": "resnet20-12fca82f.th", "train_images": 8000, "epochs": 2, "top_k": 2,
                "six_segment_sample": 40, "val_images": 2000},
    "full": {"depth": 56, "ckpt": "resnet56-4bfd9763.th", "train_images": 45000, "epochs": 30, "top_k": 3,
             "six_segment_sample": 200, "val_images": 5000},
}
RATIOS = "0,0.25,0.5,0.75"


def _profile(paths: dict[str, Path], target) -> dict[str, object]:
    from scbp_edge.profile.runner import profile_interleaved
    from scbp_edge.runtimes import get_runtime

    be = get_runtime("onnxruntime")
    got: dict[str, object] = {}
    profile_interleaved([Item(k, v) for k, v in paths.items()], target, backend=be, worker_argv=be.worker_argv(),
                        on_result=lambda k, m, e: got.__setitem__(k, m))
    return got


class Bench:
    def __init__(self, mode: str) -> None:
        from scbp_edge.api import SeedOptions, Workbench
        from scbp_edge.data import read_split, split_val
        from scbp_edge.targets import load_target

        self.m = MODES[mode]
        self.mode = mode
        ckpt = SHARED / "seeds/cifar10-resnet" / self.m["ckpt"]
        name = f"cifar-resnet{self.m['depth']}"
        self.stage = Workbench(SeedOptions(name, str(ckpt)))
        self.six = Workbench(SeedOptions(name, str(ckpt), segments="6"), self.stage.seed)
        spec = self.stage.seed.spec
        train = read_split(SHARED / "data/cifar10-jpeg/train.tar.gz", (32, 32))
        test = read_split(SHARED / "data/cifar10-jpeg/test.tar.gz", (32, 32))
        rest, val = split_val(train, 0.1, 0)
        rng = np.random.default_rng(0)
        pick = rng.permutation(len(rest))
        self.train_x, self.train_y = rest.subset(pick[: self.m["train_images"]]).tensors(spec.mean, spec.std)
        self.bn_x = self.train_x[:256]
        vpick = rng.permutation(len(val))[: self.m["val_images"]]
        self.val_x, self.val_y = val.subset(vpick).tensors(spec.mean, spec.std)
        self.test_x, self.test_y = test.tensors(spec.mean, spec.std)
        self.target = load_target("cpu")
        self.work = ROOT / "benchmarks" / ".work" / f"peers-{mode}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict] = {}
        self.models: dict[str, torch.nn.Module] = {}

    def proxy(self, model) -> float:
        from scbp_edge.accuracy import adapt_bn, evaluate

        adapt_bn(model, self.bn_x)
        return evaluate(model, self.val_x, self.val_y)

    def add(self, key: str, family: str, model, ratios=None) -> None:
        from scbp_edge.derive import model_cost
        from scbp_edge.export.onnx import export_onnx

        t = time.perf_counter()
        cost = model_cost(model, (3, 32, 32))
        export_onnx(model, (3, 32, 32), self.work / f"{key}.onnx")
        self.rows[key] = {"config": key, "family": family, "ratios": ratios, "params": cost.params, "macs": cost.macs,
                          "size_mb": (self.work / f"{key}.onnx").stat().st_size / 2**20,
                          "proxy": self.proxy(model), "derive_s": time.perf_counter() - t}
        self.models[key] = model

    def space(self) -> None:
        spaces = ((self.stage, "scbp-stages", None), (self.six, "scbp-6seg", self.m["six_segment_sample"]))
        for wb, label, limit in spaces:
            for c in wb.space(RATIOS, limit=limit):
                fam = "uniform" if c.reference == "uniform" else ("seed" if c.reference == "seed" else label)
                if c.reference and label == "scbp-6seg":
                    continue  # references once (from the stage space)
                self.add(c.id, fam, wb.candidate(c.ratios)[1], c.ratios)
        lat = _profile({k: self.work / f"{k}.onnx" for k in self.rows}, self.target)
        for k, m in lat.items():
            self.rows[k]["p50_ms"] = m.latency.p50_ms if m else None

    def matched_tp(self, latency: float, global_pruning: bool, tag: str) -> str:
        """Bisection on Torch-Pruning's ratio until measured p50 matches ``latency``."""
        from scbp_edge.derive.tp_adapter import magnitude_prune
        from scbp_edge.export.onnx import export_onnx

        lo, hi, best = 0.0, 0.9, None
        for _ in range(6):
            r = (lo + hi) / 2
            model = magnitude_prune(self.stage.seed.model, (3, 32, 32), r, global_pruning=global_pruning,
                                    ignored=self.stage.deriver.ignored, round_to=8)
            path = self.work / "probe.onnx"
            export_onnx(model, (3, 32, 32), path)
            p50 = _profile({"probe": path}, self.target)["probe"].latency.p50_ms
            if best is None or abs(p50 - latency) < abs(best[1] - latency):
                best = (r, p50, model)
            lo, hi = (r, hi) if p50 > latency else (lo, r)
        key = f"tp-{'global' if global_pruning else 'uniform'}-{best[0]:.3f}-{tag}"
        self.add(key, f"tp-{'global' if global_pruning else 'uniform'}", best[2])
        return key

    def finetune(self, keys: list[str]) -> None:
        from scbp_edge.accuracy import evaluate, train

        for k in keys:
            t = time.perf_counter()
            torch.manual_seed(0)
            model = train(self.models[k], self.train_x, self.train_y, epochs=self.m["epochs"], lr=0.02)
            self.rows[k]["test_acc"] = evaluate(model, self.test_x, self.test_y)
            self.rows[k]["train_s"] = time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="cifar-resnet56, full train set, 30 epochs (GPU machines)")
    mode = "full" if ap.parse_args().full else "default"
    if not (SHARED / "data/cifar10-jpeg/train.tar.gz").is_file():
        print("needs ../shared (CIFAR-10 JPEG and the pretrained seeds)", file=sys.stderr)
        return 2
    from scbp_edge.rank import pareto_front, pick_top_k

    t0 = time.perf_counter()
    b = Bench(mode)
    b.space()
    pts = [dict(r, id=k, accuracy=r["proxy"], reference="seed" if r["family"] == "seed" else None)
           for k, r in b.rows.items() if r.get("p50_ms")]
    scbp_pts = [p for p in pts if p["family"].startswith("scbp") or p["family"] == "seed"]
    picks = pick_top_k(scbp_pts, b.m["top_k"])
    seed_key = next(k for k, r in b.rows.items() if r["family"] == "seed")
    trained = [seed_key, *picks]
    uniforms = [p for p in pts if p["family"] == "uniform"]
    for i, k in enumerate(picks):
        lat = b.rows[k]["p50_ms"]
        trained.append(min(uniforms, key=lambda p, lat=lat: abs(p["p50_ms"] - lat))["id"])
        trained.append(b.matched_tp(lat, False, f"m{i}"))
        trained.append(b.matched_tp(lat, True, f"m{i}"))
    trained = list(dict.fromkeys(trained))
    b.finetune(trained)
    final = _profile({k: b.work / f"{k}.onnx" for k in trained}, b.target)
    for k in trained:
        b.rows[k]["p50_ms_final"] = final[k].latency.p50_ms if final[k] else None
    res = summarize(b, trained, picks, seed_key, pareto_front, time.perf_counter() - t0)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = "" if mode == "default" else "_full"
    (OUT / f"scbp_vs_peers{suffix}.json").write_text(json.dumps(res, indent=2))
    (OUT / f"scbp_vs_peers{suffix}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


def summarize(b: Bench, trained, picks, seed_key, pareto_front, wall) -> dict:
    from scipy.stats import spearmanr

    seed = b.rows[seed_key]
    rows = [b.rows[k] for k in trained]
    goal = []
    for r in rows:
        if r["family"].startswith("scbp"):
            speed = seed["p50_ms_final"] / r["p50_ms_final"]
            smaller = 1 - r["params"] / seed["params"]
            goal.append({"config": r["config"], "speedup": speed, "smaller": smaller,
                         "acc_delta": r["test_acc"] - seed["test_acc"],
                         "meets": speed >= 1.5 and smaller >= 0.5 and r["test_acc"] >= seed["test_acc"] - 1.0})
    rho = spearmanr([r["proxy"] for r in rows], [r["test_acc"] for r in rows]).statistic
    tpts = [dict(id=r["config"], accuracy=r["test_acc"], p50_ms=r["p50_ms_final"]) for r in rows]
    front = pareto_front(tpts, (("accuracy", "max"), ("p50_ms", "min")))
    fam_on_front = {r["family"] for r in rows if r["config"] in front}
    space = [{k: r.get(k) for k in ("config", "family", "params", "macs", "p50_ms", "proxy")} for r in b.rows.values()]
    return {"mode": b.mode, "settings": b.m, "ratios": RATIOS, "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": wall, "trained": rows, "goal": goal, "goal_met": any(g["meets"] for g in goal),
            "proxy_spearman": None if rho != rho else float(rho), "trained_front": front,
            "families_on_trained_front": sorted(fam_on_front), "space": space}


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [f"# SCBP vs peers ({r['mode']} mode, {r['date']}, wall {r['wall_s'] / 60:.1f} min)", "",
             f"Seed cifar-resnet{s['depth']} (../shared), fine-tune {s['epochs']} epochs on {s['train_images']} "
             f"train images (SGD, cosine), test on the full 10,000-image test split. Ratios {{{r['ratios']}}}; "
             f"SCBP: stage segments (all) + 6 segments ({s['six_segment_sample']} sampled).", "",
             "| config | family | params | MACs | p50 ms | size MB | proxy acc | fine-tuned test acc | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in r["trained"]:
        lines.append(f"| {t['config']} | {t['family']} | {t['params']:,} | {t['macs']:,} | {t['p50_ms_final']:.3f} | "
                     f"{t['size_mb']:.2f} | {t['proxy']:.2f} | {t['test_acc']:.2f} | "
                     f"{t['derive_s'] + t['train_s']:.0f} |")
    lines += ["", "Goal (>= 1.5x faster p50, >= 50% fewer params, within 1.0 pt of the equally fine-tuned seed):"]
    for g in r["goal"]:
        lines.append(f"- {g['config']}: {g['speedup']:.2f}x, {100 * g['smaller']:.0f}% smaller, "
                     f"{g['acc_delta']:+.2f} pt -> {'met' if g['meets'] else 'not met'}")
    lines += [f"- overall: {'met' if r['goal_met'] else 'NOT met'} in this run.", "",
              f"Accuracy/latency front of the fine-tuned models: {', '.join(r['trained_front'])} "
              f"(families: {', '.join(r['families_on_trained_front'])}).",
              f"Spearman rank correlation, proxy vs fine-tuned accuracy over the {len(r['trained'])} trained models: "
              f"{r['proxy_spearman']:.2f}." if r["proxy_spearman"] is not None else "Spearman: undefined."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
