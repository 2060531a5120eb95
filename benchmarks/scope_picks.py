"""Which channels a segment cuts (issue 56): the stream, inner and both picks at each budget, fine-tuned alike.

Per seed (cifar-resnet20 or cifar-resnet56 from ../shared), with scbp_vs_peers' protocol and code:
1. the stage space (RATIOS) with ``--scope both``: every candidate derived as the build derives it (channels
   chosen, weights re-solved on 512 training images), scored by adaptive BN on a validation split and measured
   on the cpu target (1 thread, paired with the seed in every round); each row notes which of the three
   spaces (``--scope stream``, ``inner``, ``both``) holds it;
2. per speed-up budget (1.25x, 1.5x, 2.0x) and per scope, the product's ``pick_for_training`` shortlists that
   scope's candidates inside the budget (plus a margin) and the distillation proxy picks among those inside;
3. every distinct pick, and the seed as the reference, gets the build's fine-tune (8,000 images x 2 epochs,
   3 training seeds, distillation from the better of the seed and the seed fine-tuned first); test top-1 on
   the 10,000 test images, mean +- std.
The peers (uniform width, Torch-Pruning uniform and global) are read from scbp_vs_peers_<seed>.json: the same
data, fine-tune and seeds, matched there to that run's SCBP pick at the same budget (its speed-up is shown).
Writes benchmarks/results/scope_picks_<seed>.{json,md}.

Run alone on an idle machine, one seed per process (resumable: the same command continues a killed run):
  .venv/bin/python benchmarks/scope_picks.py --seed cifar-resnet20 [--budgets 2.0]
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
from _common import OUT, log, missing_shared, parser, publish
from scbp_vs_peers import BUDGETS, MODES, PEERS, RATIOS, SEEDS, Lab, parse_budgets, recipe

SCOPES = ("stream", "inner", "both")


class ScopeLab(Lab):
    """scbp_vs_peers' Lab over the stage space of all three scopes; every network derived with its scopes."""

    def search(self) -> None:
        spaces = {mode: {c.id for c in self.stage.space(RATIOS, scope=mode)} for mode in SCOPES}
        cands = self.stage.space(RATIOS, scope="both")
        log(f"{self.name}: {len(cands)} candidates ({', '.join(f'{m} {len(s)}' for m, s in spaces.items())})")
        for c in cands:
            fam = "seed" if c.reference == "seed" else "scbp"
            self.add(c.id, fam, self.stage.candidate(c.ratios, scopes=c.scopes)[1], c.ratios)
            self.rows[c.id].update(reference=c.reference, scopes=c.scopes,
                                   modes=[m for m in SCOPES if c.id in spaces[m]])
            if fam == "seed":
                self.seed_key = c.id
        log(f"{self.name}: derived and scored; measuring")
        self.measure_into(list(self.rows))

    def pick(self, budget: float, mode: str) -> dict[str, Any]:
        """The build's choice at ``budget`` among the candidates of ``--scope mode``."""
        from scbp_edge.lab import Constraints, pick_for_training, within_latency_budget

        cons = Constraints(speedup=budget)
        pts = [SimpleNamespace(id=k, network=k, reference=r.get("reference"), proxy_accuracy=r["adabn"],
                               precision="fp32", p50_ms=r["p50_ms"], speedup=r["speedup"])
               for k, r in self.rows.items() if mode in r.get("modes", ()) and r.get("p50_ms")]
        picks = pick_for_training(pts, self.m["k"], cons, margin=self.m["margin"])
        inside = [p for p in pts if p.id in picks and within_latency_budget(cons, p)]
        if not inside:
            return {"budget": budget, "mode": mode, "scbp": None, "shortlist": picks}
        scores = {p.id: self.distill(p.id) for p in pts if p.id in picks}
        best = max(inside, key=lambda p: scores[p.id])
        return {"budget": budget, "mode": mode, "scbp": best.id, "shortlist": picks, "distill_scores": scores}

    def model(self, key: str):
        if key not in self.models:
            r = self.rows[key]
            self.models[key] = self.stage.candidate(r["ratios"], scopes=r.get("scopes", []))[1]
        return self.models[key]

    def start(self, key: str):
        """The build's start: re-solved, classifier inherited (the seed: itself)."""
        r = self.rows[key]
        if not any(r["ratios"]):
            return self.model(key)
        return self.stage.candidate(r["ratios"], for_training=True, scopes=r.get("scopes", []))[1]


def run_seed(name: str, m: dict[str, Any], budgets: tuple[float, ...], mode: str) -> dict[str, Any]:
    lab = ScopeLab(name, m, mode)
    if not (lab.load() and "picks" in lab.state):
        lab.search()
        picks = [lab.pick(b, mode) for b in BUDGETS for mode in SCOPES]
        lab.save(picks=picks)
    picks = lab.state["picks"]
    log(f"{name}: picks " + ", ".join(f"{p['budget']}x {p['mode']}: {p['scbp']}" for p in picks))
    log(f"{name}: fine-tuning the seed first: it is the reference, and the teacher where it is the better one")
    lab.finetune(lab.seed_key, m["train_seeds"], distill=False)
    teacher = lab.choose_teacher()
    todo = list(dict.fromkeys(p["scbp"] for p in picks if p["scbp"] and p["budget"] in budgets))
    for i, k in enumerate(todo):
        log(f"{name}: fine-tuning {k} ({i + 1}/{len(todo)})")
        lab.finetune(k, m["train_seeds"])
    lab.save()
    return {"seed": name, "seed_key": lab.seed_key, "picks": picks, "rows": lab.rows, "teacher": teacher,
            "recipe": recipe(), "settings": m, "wall_s": lab.state["wall_s"], "peers": peers_of(name)}


def peers_of(name: str) -> dict[str, Any]:
    """The peers' fine-tuned figures per budget from scbp_vs_peers_<seed>.json (same protocol), where present."""
    f = OUT / f"scbp_vs_peers_{name}.json"
    if not f.is_file():
        return {}
    seed = json.loads(f.read_text())["seeds"][0]
    return {str(b["budget"]): {fam: {k: b["peers"][fam].get(k) for k in ("config", "speedup", "acc_mean", "acc_std")}
                               for fam in PEERS if fam in b.get("peers", {})} for b in seed["budgets"]}


def _acc(row: dict[str, Any]) -> tuple[float, float] | None:
    accs = row.get("test_acc") or []
    return (float(np.mean(accs)), float(np.std(accs))) if accs else None


def markdown(res: dict[str, Any]) -> str:
    rows, seed = res["rows"], res["rows"][res["seed_key"]]
    ref = _acc(seed)
    lines = [f"# Which channels a segment cuts: {res['seed']} (issue 56)", "",
             f"Command: `{res['command']}` ({res['wall_s'] / 60:.0f} min alone, 2-core CPU). Settings: "
             f"{res['settings']['train_images']:,} images x {res['settings']['epochs']} epochs, "
             f"{res['settings']['train_seeds']} training seeds; test top-1 on 10,000 images, mean +- std.", "",
             f"Seed reference (fine-tuned alike, no teacher): **{ref[0]:.2f} +- {ref[1]:.2f} %**" if ref else "", "",
             "| budget | scope | pick | speed-up | params | adaBN % | before % | after fine-tune % | vs seed pt |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in res["picks"]:
        r = rows.get(p["scbp"]) if p["scbp"] else None
        if r is None:
            lines.append(f"| {p['budget']}x | {p['mode']} | none inside the budget | | | | | | |")
            continue
        acc = _acc(r)
        cell = f"{acc[0]:.2f} +- {acc[1]:.2f}" if acc else "not fine-tuned"
        vs = f"{acc[0] - ref[0]:+.2f}" if acc and ref else ""
        lines.append(f"| {p['budget']}x | {p['mode']} | {p['scbp']} | {r['speedup']:.2f} | {r['params']:,} | "
                     f"{r['adabn']:.1f} | {r.get('test_before', float('nan')):.1f} | {cell} | {vs} |")
    if res["peers"]:
        lines += ["", "Peers from `scbp_vs_peers_" + res["seed"] + ".json` (same protocol; matched there to that "
                  "run's pick):", "", "| budget | peer | speed-up | after fine-tune % |", "|---|---|---|---|"]
        for b, fams in res["peers"].items():
            for fam, q in fams.items():
                lines.append(f"| {b}x | {fam} | {q['speedup']:.2f} | {q['acc_mean']:.2f} +- {q['acc_std']:.2f} |")
    lines += ["", f"Candidates measured: {len(rows)}; teacher validation scores: {res['teacher']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--seed", required=True, help="one of " + ", ".join(SEEDS))
    ap.add_argument("--budgets", help="fine-tune only these budgets' picks now, e.g. 2.0 (default: all of "
                    + ",".join(map(str, BUDGETS)) + "); a later run with the rest resumes")
    ap.add_argument("--smoke", action="store_true", help="tiny settings, results under benchmarks/.work")
    a = ap.parse_args()
    budgets = parse_budgets(a.budgets)
    if budgets is None or a.seed not in SEEDS:
        print(f"--seed {a.seed} --budgets {a.budgets}: give a seed of {', '.join(SEEDS)} and a subset of "
              f"{','.join(map(str, BUDGETS))}", file=sys.stderr)
        return 2
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    m = dict(MODES["smoke" if a.smoke else "default"], seeds=[a.seed], ablation=False)
    res = run_seed(a.seed, m, budgets, "scope-smoke" if a.smoke else "scope")
    res["command"] = f"python benchmarks/scope_picks.py --seed {a.seed}" + (f" --budgets {a.budgets}" if a.budgets
                                                                              else "") + (" --smoke" if a.smoke else "")
    publish(OUT.parent / ".work" if a.smoke else OUT, f"scope_picks_{a.seed}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
