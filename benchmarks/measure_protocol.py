"""Where does CPU latency noise come from?  Repeated profiling passes under protocol variants.

Each *pass* measures the same models with fresh worker processes, as one build
does; comparing passes shows run-to-run reproducibility (what issues 18 and 21
ask for), comparing variants shows which protocol change removes the noise.
Models: the default build's networks (ResNet-20 on 16x16 digits, about 0.1 ms)
and, with ../shared, the pretrained cifar-resnet56's candidates (about 2 ms).

Writes benchmarks/results/measure_protocol.{json,md}.  Run alone on an idle machine:
    .venv/bin/python benchmarks/measure_protocol.py [--passes 4] [--variants a,b]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from _common import OUT, ROOT, SHARED, parser

from scbp_edge.lab import Item

WORK = ROOT / "benchmarks" / ".work" / "protocol"
# name -> (extra worker config, measure-policy overrides)
VARIANTS: dict[str, tuple[dict, dict]] = {
    # before: all cores (2 threads here), count-based warm-up only, 5 rounds of >= 0.2 s
    "before": ({"threads": 0, "warmup_s": 0.0}, {}),
    "two-threads-warm": ({"threads": 0, "warmup_s": 0.2}, {}),
    # after: one thread (no intra-op pool to spin or to be placed badly), 0.2 s warm-up alone before timing
    "one-thread-warm": ({"threads": 1, "warmup_s": 0.2}, {}),
    "one-thread-short": ({"threads": 1, "warmup_s": 0.1}, {"min_seconds": 0.06}),
}


def _models() -> dict[str, list[Item]]:
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.lab import defaults, export_onnx, load_seed

    sets = {}
    digits = load_seed(defaults.DEFAULT_SEED, defaults.default_seed_weights(), input_shape=defaults.DEFAULT_INPUT,
                       mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
    seeds = {"digits-resnet20": Workbench(SeedOptions(defaults.DEFAULT_SEED, round_to=8), digits)}
    ckpt = SHARED / "seeds/cifar10-resnet/resnet56-4bfd9763.th"
    if ckpt.is_file():
        seeds["cifar-resnet56"] = Workbench(SeedOptions("cifar-resnet56", str(ckpt), round_to=8))
    for name, wb in seeds.items():
        items = []
        for c in wb.space("0,0.25,0.5"):
            path = WORK / name / f"{c.id}.onnx"
            if not path.is_file():
                export_onnx(wb.candidate(c.ratios)[1], wb.seed.spec.input_shape, path)
            items.append(Item(c.id, path))
        sets[name] = items
    return sets


def _pass(items: list[Item], extra: dict, policy: dict) -> dict[str, dict]:
    from scbp_edge.lab import get_runtime, load_target, profile_interleaved

    target = load_target("cpu")
    for k, v in policy.items():
        setattr(target.measure, k, v)
    rt = get_runtime("onnxruntime")
    got: dict[str, dict] = {}
    extra = dict(extra)  # "threads" here overrides the target's in each worker's configuration
    profile_interleaved(items, target, backend=rt, worker_argv=rt.worker_argv(), extra_config=extra,
                        on_result=lambda k, m, e: got.__setitem__(k, {"p50": m.latency.p50_ms,
                                                                      "rounds": m.latency.round_p50_ms} if m else None))
    return got


def _summary(passes: list[dict[str, dict]], seed_id: str) -> dict:
    from scipy.stats import kendalltau

    ids = [k for k in passes[0] if all(p.get(k) for p in passes)]
    p50 = {k: [p[k]["p50"] for p in passes] for k in ids}
    cv = {k: statistics.pstdev(v) / statistics.mean(v) for k, v in p50.items()}
    ratio = {k: [p[k]["p50"] / p[seed_id]["p50"] for p in passes] for k in ids if k != seed_id}
    rcv = {k: statistics.pstdev(v) / statistics.mean(v) for k, v in ratio.items()}
    within = [statistics.pstdev(r) / statistics.mean(r) for p in passes for k in ids if len(r := p[k]["rounds"]) > 1]
    taus = [kendalltau([passes[i][k]["p50"] for k in ids], [passes[j][k]["p50"] for k in ids]).statistic
            for i in range(len(passes)) for j in range(i + 1, len(passes))]
    fastest = [min(ids, key=lambda k, p=p: p[k]["p50"]) for p in passes]
    return {"median_cv_p50_across_passes": statistics.median(cv.values()),
            "max_cv_p50_across_passes": max(cv.values()),
            "median_cv_speedup_across_passes": statistics.median(rcv.values()),
            "max_cv_speedup_across_passes": max(rcv.values()),
            "median_cv_within_pass_rounds": statistics.median(within),
            "kendall_tau_between_passes": {"min": min(taus), "median": statistics.median(taus)},
            "seed_p50_ms": p50[seed_id], "same_fastest_every_pass": len(set(fastest)) == 1}


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--models", default="", help="model sets to use (default: all)")
    ap.add_argument("--markdown-only", action="store_true", help="re-render the .md from the last .json")
    args = ap.parse_args()
    if args.markdown_only:
        (OUT / "measure_protocol.md").write_text(markdown(json.loads((OUT / "measure_protocol.json").read_text())))
        return 0
    t0 = time.perf_counter()
    sets = _models()
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "passes": args.passes, "results": {}}
    for name in args.variants.split(","):
        extra, policy = VARIANTS[name]
        for model_set, items in sets.items():
            if args.models and model_set not in args.models.split(","):
                continue
            passes = [_pass(items, extra, policy) for _ in range(args.passes)]
            seed_id = next(it.key for it in items if it.key.endswith("_r0-0-0"))
            res["results"].setdefault(name, {})[model_set] = _summary(passes, seed_id)
            print(name, model_set, json.dumps(res["results"][name][model_set]), flush=True)
    res["wall_s"] = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    from scbp_edge.lab import write_results

    write_results(OUT, "measure_protocol", res, markdown(res))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Measurement protocol: run-to-run reproducibility ({r['date']})", "",
             f"Each variant measured the same models in {r['passes']} independent passes (fresh worker processes, "
             "as separate builds do), 8 models per chunk, 5 interleaved rounds. Command: "
             "`.venv/bin/python benchmarks/measure_protocol.py` on an idle 2-vCPU machine "
             f"(wall {r.get('wall_s', 0) / 60:.0f} min).", "",
             "| variant | models | CV of p50 across passes (median / max) | CV of speed-up vs seed (median / max) "
             "| Kendall tau between passes (median / min) | seed p50 per pass (ms) |", "|---|---|---|---|---|---|"]
    for name, sets in r["results"].items():
        for model_set, d in sets.items():
            t = d["kendall_tau_between_passes"]
            cv = f"{100 * d['median_cv_p50_across_passes']:.1f} % / {100 * d['max_cv_p50_across_passes']:.1f} %"
            sp = (f"{100 * d['median_cv_speedup_across_passes']:.1f} % / "
                  f"{100 * d['max_cv_speedup_across_passes']:.1f} %")
            lines.append(f"| {name} | {model_set} | {cv} | {sp} | {t['median']:.2f} / {t['min']:.2f} | "
                         + ", ".join(f"{x:.3g}" for x in d["seed_p50_ms"]) + " |")
    lines += ["", "What the data says: with two intra-op threads on this 2-vCPU VM, the same model's latency flips "
              "between two levels from one process to the next (seed of the digits set: 0.096 or 0.165 ms; "
              "resnet56: 0.72 or 1.02 ms), whatever the warm-up; a single process alone shows the same flips across "
              "launches, so it is the placement of the two threads, not the protocol. Pooled across passes that is "
              "a 17-28 % CV and rankings that do not repeat (tau down to 0). One thread per inference removes it: "
              "1-1.5 % CV, tau 0.94-0.95. The time-based warm-up runs when a worker has the machine to itself "
              "(first round), because all workers of a chunk warming at once left their thread pools in the slow "
              "state. The cpu target therefore measures with threads = 1 (and the served image uses what the model "
              "was measured with); a target with real cores can set threads."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
