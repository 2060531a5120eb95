"""Second method change for issue 13: per-segment ratio sets chosen from measured sensitivity on the 6-segment split.

scbp_vs_peers.py tried the sensitivity-chosen sets on the 3 stage segments, where they are a subset of the
stage grid and change no pick.  Here each of the 6 segments is probed alone on the fine grid, the sets are
chosen by ``scbp_edge.space.ratio_sets_from_sensitivity``, a sample of their product is derived, scored and
measured, and the 1.5x pick (same ``pick_for_training`` shortlist + distillation proxy as the benchmark) is
fine-tuned alike next to the 1.5x pick of ``results/scbp_vs_peers_<seed>.json`` (the incumbent), both in
this run with the same data, schedule and training seeds.
Run alone, after scbp_vs_peers.py:  .venv/bin/python benchmarks/sens_six.py
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import scbp_vs_peers as peers
from _common import OUT, WORK, command, log, publish
from peers_report import mean_std

BUDGET = 1.5


def run(name: str, m: dict[str, Any]) -> dict[str, Any]:
    prev = json.loads((OUT / f"scbp_vs_peers_{name}.json").read_text())["seeds"][0]
    incumbent = next(b for b in prev["budgets"] if b["budget"] == BUDGET)["scbp"]
    lab = peers.Lab(name, m, "sens6")
    seed = next(c for c in lab.stage.space(peers.RATIOS) if c.reference == "seed")
    lab.add(seed.id, "seed", lab.stage.candidate(seed.ratios)[1], seed.ratios)
    lab.seed_key = seed.id
    lab.rows[seed.id]["reference"] = "seed"
    ratios = next(r["ratios"] for r in prev["space"] if r["config"] == incumbent["config"])
    wb = lab.stage if len(ratios) == lab.stage.num_segments else lab.six
    lab.add(incumbent["config"], "incumbent", wb.candidate(ratios)[1], ratios)
    lab.measure_into([seed.id, incumbent["config"]])
    sens = lab.sensitivity_space(lab.six, "scbp-6seg-sens")
    pick = lab.scbp_pick(BUDGET)
    keys = list(dict.fromkeys([incumbent["config"], pick["scbp"]] if pick["scbp"] else [incumbent["config"]]))
    final = lab.measure([seed.id, *keys])
    out = {"seed": name, "sets": sens["ratios"], "probes": sens["probes"], "added": sens["added"],
           "pick": pick, "incumbent": incumbent["config"], "models": {}}
    for k in keys:
        log(f"{name}: fine-tuning {k}")
        lab.distill(k)
        accs = lab.finetune(k, m["train_seeds"])
        r = lab.rows[k]
        out["models"][k] = {"family": r["family"], "params": r["params"], "params_cut": 1 - r["params"] /
                            lab.rows[seed.id]["params"], "p50_ms": final[k][0], "speedup": final[k][1],
                            "adabn": r["adabn"], "distill": r["distill"], "test_acc": accs}
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Method change: sensitivity-chosen ratio sets on 6 segments (issue 13)", "",
             f"{res['date']}, wall {res['wall_s'] / 60:.1f} min. Command: `{res['command']}` on an idle machine. "
             f"Fine-tune as scbp_vs_peers.py's {res['mode']} mode ({res['settings']['epochs']} epochs on "
             f"{res['settings']['train_images']:,} images, distillation, {res['settings']['train_seeds']} training "
             "seeds, test top-1 on 10,000 images); speed-ups paired with the seed in one interleaved run.", ""]
    for s in res["seeds"]:
        lines += [f"## {s['seed']}", "", f"Sets chosen from {s['probes']} single-segment probes: "
                  f"`--ratios {s['sets']} --segments 6`; {s['added']} configurations of their product sampled.", "",
                  "| model | family | params cut | p50 ms | speed-up | adaBN | distill | test top-1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, r in s["models"].items():
            mean, std = mean_std(r["test_acc"])
            lines.append(f"| {k} | {r['family']} | {100 * r['params_cut']:.0f} % | {r['p50_ms']:.3f} | "
                         f"{r['speedup']:.2f}x | {r['adabn']:.1f} | {r['distill']:.1f} | {mean:.2f} +- {std:.2f} |")
        lines.append("")
        if len(s["models"]) == 1:
            lines += ["The 1.5x pick with the new space is the incumbent itself: no change.", ""]
    return "\n".join(lines)


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):  # options: --smoke, --seeds=NAME[,NAME]
        print(__doc__)
        return 0
    mode = "smoke" if "--smoke" in sys.argv else "default"
    m = dict(peers.MODES[mode])
    if mode == "default":
        m["sens_sample"] = 60  # the 6-segment product is thousands of configurations: sample more than on 3
    names = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--seeds=")]
    names = names[0].split(",") if names else ["cifar-resnet20", "cifar-resnet56"]
    t0 = time.perf_counter()
    seeds = [run(n, m) for n in names]
    res = {"mode": mode, "settings": m, "seeds": seeds, "wall_s": time.perf_counter() - t0,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": command()}
    out = OUT if mode == "default" else WORK
    publish(out, f"sens_six{'_smoke' if mode == 'smoke' else ''}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
