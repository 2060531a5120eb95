"""Summary and Markdown of benchmarks/scbp_vs_peers.py (pure: numbers in, tables out)."""

from __future__ import annotations

import math
import platform
import time
from typing import Any

import numpy as np


def mean_std(v: list[float]) -> tuple[float, float]:
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _row(rows: dict[str, dict[str, Any]], key: str, seed_key: str, family: str) -> dict[str, Any]:
    r, s = rows[key], rows[seed_key]
    mean, std = mean_std(r["test_acc"])
    return {"config": key, "family": family, "params": r["params"], "smaller": 1 - r["params"] / s["params"],
            "macs": r["macs"], "p50_ms": r["final_p50_ms"], "speedup": r["final_speedup"], "adabn": r["adabn"],
            "distill": r.get("distill"), "acc_mean": mean, "acc_std": std, "accs": r["test_acc"],
            "before": r.get("test_before"), "train_s": sum(r.get("train_s", []))}


def _verdict(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """SCBP ``a`` against peer ``b``: the difference of means against their combined std."""
    diff = a["acc_mean"] - b["acc_mean"]
    sd = math.hypot(a["acc_std"], b["acc_std"])
    return {"peer": b["config"], "diff": diff, "sd": sd,
            "verdict": "win" if diff > sd else ("loss" if diff < -sd else "tie (within std)")}


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return None
    rho = spearmanr(xs, ys).statistic
    return None if rho != rho else float(rho)


def lone_segment(row: dict[str, Any], families: tuple[str, ...], segments: int) -> int | None:
    """The segment a measured candidate row prunes alone (one non-zero ratio of ``segments``), else None."""
    ratios = row.get("ratios") or []
    pruned = [i for i, v in enumerate(ratios) if v]
    if row["family"] in families and len(ratios) == segments and len(pruned) == 1 and row.get("speedup"):
        return pruned[0]
    return None


def _sensitivity(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage segment pruned alone (coarse and fine grid): its paired speed-up and adaptive-BN proxy drop."""
    rows, seed = res["rows"], res["rows"][res["seed_key"]]
    out = []
    for r in rows.values():
        seg = lone_segment(r, ("scbp-stages", "scbp-sens"), res["segments"])
        if seg is not None:
            ratios = r["ratios"]
            out.append({"segment": seg, "ratio": ratios[seg], "speedup": r["speedup"], "params_cut":
                        1 - r["params"] / seed["params"], "adabn_drop": seed["adabn"] - r["adabn"]})
    return sorted(out, key=lambda d: (d["segment"], d["ratio"]))


def _method_change(res: dict[str, Any], sk: str) -> dict[str, Any] | None:
    """The 1.5x pick with the sensitivity-chosen sets against the pick without them, both fine-tuned alike."""
    sens = res.get("sensitivity_space")
    if not sens:
        return None
    rows = res["rows"]
    out = {"ratios": sens["ratios"], "probes": sens["probes"], "added": sens["added"]}
    for side in ("with", "without"):
        k = sens.get(side)
        out[side] = _row(rows, k, sk, rows[k]["family"]) if k and rows[k].get("test_acc") else None
    if out["with"] and out["without"] and out["with"]["config"] != out["without"]["config"]:
        out["verdict"] = _verdict(out["with"], out["without"])
    return out


def _seed_reference(res: dict[str, Any]) -> dict[str, Any]:
    """What a user would ship: the best of the seed as it came, its plain and its distilled fine-tune."""
    rows, sk = res["rows"], res["seed_key"]
    seed = _row(rows, sk, sk, "seed")
    dist = (res.get("ablation") or {}).get(sk, {}).get("distill")
    if dist and mean_std(dist)[0] > seed["acc_mean"]:
        mean, std = mean_std(dist)
        seed = dict(seed, acc_mean=mean, acc_std=std, accs=dist, family="seed (distilled from itself)")
    came = rows[sk].get("test_before")
    if came is not None and came > seed["acc_mean"]:  # a seed already trained on the data can lose by fine-tuning
        seed = dict(seed, acc_mean=came, acc_std=0.0, accs=[came], family="seed (as it came)")
    return seed


def summarize_seed(res: dict[str, Any], budgets: tuple[float, ...], match: float) -> dict[str, Any]:
    rows, sk = res["rows"], res["seed_key"]
    seed = _seed_reference(res)
    per_budget = []
    for p in res["picks"]:
        if not p["scbp"]:
            per_budget.append({"budget": p["budget"], "scbp": None, "note": "no SCBP candidate inside the budget"})
            continue
        scbp = _row(rows, p["scbp"], sk, rows[p["scbp"]]["family"])
        peers = {f: dict(_row(rows, q["id"], sk, f), mismatch=q["mismatch"]) for f, q in p["peers"].items()}
        inh = p.get("inherited")
        inherited = _row(rows, inh, sk, "scbp-inherited") if inh and rows[inh].get("test_acc") else None
        per_budget.append({
            "budget": p["budget"], "scbp": scbp, "peers": peers, "adabn_choice": p["adabn_choice"],
            "inherited": inherited, "reconstruction": _verdict(scbp, inherited) if inherited else None,
            "shortlist": p["shortlist"], "verdicts": {f: _verdict(scbp, q) for f, q in peers.items()},
            "matched": all(abs(q["mismatch"]) <= match for q in peers.values()),
            "beats_all": all(_verdict(scbp, q)["verdict"] == "win" for q in peers.values()),
            "at_or_above_all": all(_verdict(scbp, q)["verdict"] != "loss" for q in peers.values()),
            "acc_vs_seed": scbp["acc_mean"] - seed["acc_mean"],
        })
    mid = next((b for b in per_budget if b["budget"] == 1.5 and b["scbp"]), None)
    goal = None
    if mid:
        s = mid["scbp"]
        goal = {"speedup": s["speedup"], "smaller": s["smaller"], "acc_delta": mid["acc_vs_seed"],
                "met": s["speedup"] >= 1.5 and s["smaller"] >= 0.5 and mid["acc_vs_seed"] >= -1.0}
    trained = [_row(rows, k, sk, rows[k]["family"]) for k in res["trained"]]
    final = [t["acc_mean"] for t in trained]
    ablation = {k: {"distill": mean_std(v["distill"]), "plain": mean_std(v["plain"])}
                for k, v in res["ablation"].items()}
    return {"seed": res["seed"], "seed_row": seed, "budgets": per_budget, "goal_1_5x": goal,
            "teacher": res.get("teacher"), "recipe": res.get("recipe"),
            "method_change": _method_change(res, sk),
            "spearman": {"adabn": _spearman([t["adabn"] for t in trained], final),
                         "distill": _spearman([t["distill"] for t in trained], final), "n": len(trained)},
            "ablation": ablation, "sensitivity": _sensitivity(res),
            "space": [{k: r.get(k) for k in ("config", "family", "ratios", "params", "macs", "p50_ms", "speedup",
                                             "adabn", "distill")} for r in rows.values()]}


def summarize(results: list[dict[str, Any]], m: dict[str, Any], mode: str, budgets: tuple[float, ...],
              match: float, wall: float) -> dict[str, Any]:
    seeds = [summarize_seed(r, budgets, match) for r in results]
    return {"mode": mode, "settings": m, "budgets": list(budgets), "match_tolerance": match, "wall_s": wall,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}", "seeds": seeds}


def _f1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _acc(r: dict[str, Any]) -> str:
    return f"{r['acc_mean']:.2f} +- {r['acc_std']:.2f}"


def _method_md(mc: dict[str, Any] | None) -> list[str]:
    if not mc:
        return []
    out = ["Method change tried: per-segment ratio sets chosen from measured sensitivity (every segment pruned "
           f"alone on a finer grid, {mc['probes']} new probes; a ratio stays only if it buys > 1 % measured speed "
           f"over the less damaging ones): `--ratios {mc['ratios']}`, {mc['added']} more candidates.", ""]
    w, wo = mc["with"], mc["without"]
    if w and wo and w["config"] == wo["config"]:
        out.append(f"- At 1.5x the pick is the same with and without them ({w['config']}): no effect on the headline.")
    elif w and wo:
        v = mc["verdict"]
        out.append(f"- At 1.5x with them: {w['config']} ({w['family']}, {w['speedup']:.2f}x, "
                   f"{100 * w['smaller']:.0f} % fewer params) {_acc(w)}; without: {wo['config']} "
                   f"({wo['speedup']:.2f}x, {100 * wo['smaller']:.0f} %) {_acc(wo)}: {v['diff']:+.2f} "
                   f"(sd {v['sd']:.2f}), {v['verdict']}.")
    else:
        out.append("- At 1.5x one of the two picks was not fine-tuned (no candidate inside the budget).")
    return out + [""]


def _seed_md(s: dict[str, Any]) -> list[str]:
    seed = s["seed_row"]
    own = s.get("settings")  # merged per-seed runs keep their own mode and settings
    out = [f"## {s['seed']}", ""]
    if own:
        out += [f"{s['mode']} mode, its own run: `{s['command']}`; fine-tuned {own['epochs']} epochs on "
                f"{own['train_images']:,} images, {own['train_seeds']} training seeds, {own['six_segment_sample']} "
                f"sampled 6-segment configurations; wall {s['wall_s'] / 60:.1f} min.", ""]
    out += [
           f"Seed fine-tuned alike ({seed['family']}): {_acc(seed)} (before training "
           f"{_f1(seed.get('before'))}; p50 {seed['p50_ms']:.3f} ms, {seed['params']:,} params).", ""]
    if s.get("teacher"):
        t, rc = s["teacher"], s.get("recipe") or {}
        out += [f"Recipe: lr {rc.get('lr')}, warm-up {rc.get('warmup', 0):.0%} then cosine, shifts"
                f"{' and flips' if rc.get('flip') else ''}; channels by {rc.get('criterion')}, reconstruction on "
                f"{rc.get('calib_images')} images. Teacher of the pruned networks, by validation top-1: seed as it "
                f"came {t['seed']:.2f} %, fine-tuned seed {t['fine-tuned seed']:.2f} %.", ""]
    out += ["| budget | family | config | params (cut) | MACs | p50 ms | speed-up | match | adaBN | distill "
            "| before training | test top-1 | vs SCBP |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in s["budgets"]:
        if not b["scbp"]:
            out.append(f"| {b['budget']}x | - | {b['note']} |  |  |  |  |  |  |  |  |  |  |")
            continue
        inh = [("SCBP, inherited weights", b["inherited"])] if b.get("inherited") else []
        for fam, r in [("SCBP", b["scbp"]), *inh, *b["peers"].items()]:
            v = b["verdicts"].get(fam) or (b["reconstruction"] if fam.startswith("SCBP, inh") else None)
            name = f"SCBP ({r['family']})" if fam == "SCBP" else fam
            mismatch = "" if fam.startswith("SCBP") else f"{100 * r['mismatch']:+.1f} %"
            verdict = f"{v['diff']:+.2f} (sd {v['sd']:.2f}): {v['verdict']}" if v else ""
            out.append(f"| {b['budget']}x | {name} | {r['config']} | {r['params']:,} ({100 * r['smaller']:.0f} %) | "
                       f"{r['macs'] / 1e6:.1f} M | {r['p50_ms']:.3f} | {r['speedup']:.2f}x | {mismatch} | "
                       f"{r['adabn']:.1f} | {_f1(r['distill'])} | {_f1(r.get('before'))} | {_acc(r)} | {verdict} |")
    out.append("")
    g = s["goal_1_5x"]
    if g:
        out.append(f"Goal at 1.5x (>= 1.5x measured, >= 50 % fewer params, within 1.0 pt of the seed): "
                   f"{g['speedup']:.2f}x, {100 * g['smaller']:.0f} % fewer params, {g['acc_delta']:+.2f} pt -> "
                   f"**{'met' if g['met'] else 'not met'}**.")
    for b in s["budgets"]:
        if b["scbp"]:
            how = ("beats every peer beyond the std" if b["beats_all"] else
                   "is at or above every peer within the std" if b["at_or_above_all"] else
                   "loses to a peer beyond the std")
            rec = b.get("reconstruction")
            out.append(f"- {b['budget']}x: SCBP {how}; peers matched within 3 %: {'yes' if b['matched'] else 'NO'}; "
                       f"adaptive BN alone would have picked {b['adabn_choice']}" + (
                           f"; reconstruction vs inherited weights: {rec['diff']:+.2f} (sd {rec['sd']:.2f}), "
                           f"{rec['verdict']}." if rec else "."))
    sp = s["spearman"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    out += ["", f"Spearman with the fine-tuned accuracy over the {sp['n']} fine-tuned models: adaptive BN "
            f"{fmt(sp['adabn'])}, distillation proxy {fmt(sp['distill'])}.", ""]
    if s["ablation"]:
        out += ["Distillation at equal budget (mean +- std of the training seeds; the seed 'with' is distilled from "
                "itself as it came):", ""]
        for k, v in s["ablation"].items():
            d, p = v["distill"], v["plain"]
            out.append(f"- {k}: with {d[0]:.2f} +- {d[1]:.2f}, without {p[0]:.2f} +- {p[1]:.2f}")
        out.append("")
    out += _method_md(s.get("method_change"))
    out += ["Per-segment sensitivity (one stage pruned alone; search run):", "",
            "| segment | ratio | speed-up | params cut | adaBN drop (pt) |", "|---|---|---|---|---|"]
    out += [f"| {d['segment']} | {d['ratio']} | {d['speedup']:.2f}x | {100 * d['params_cut']:.0f} % | "
            f"{d['adabn_drop']:.1f} |" for d in s["sensitivity"]]
    return out + [""]


def markdown(r: dict[str, Any]) -> str:
    m = r["settings"]
    if r.get("merged"):
        intro = (f"{r['date']}, {r['machine']}. Latencies were measured with nothing else running. Every "
                 "compared model of a seed: the same fine-tune (the product's recipe, under each seed; pruned "
                 "networks distilled from the teacher named there), test top-1 on the 10,000-image test split "
                 "(mean +- std over the training seeds) and before training. Latency: the cpu target (ONNX Runtime, "
                 "1 thread), p50 and the speed-up paired "
                 "with the seed in the same rounds; peers bisected beside the SCBP model and matched in one "
                 f"interleaved run (tolerance +-{100 * r['match_tolerance']:.0f} %). SCBP: stage space "
                 "{0, 0.25, 0.5, 0.75}, sampled 6-segment configurations and, where the run tried it, the "
                 "sensitivity-chosen per-segment sets; the product's pick_for_training "
                 "shortlists, the distillation proxy chooses.")
        modes = sorted({s["mode"] for s in r["seeds"]})
        head = ["# SCBP vs peers at matched measured latency (one run per seed, merged)", "", intro, "",
                f"Wall time of the {'/'.join(modes)}-mode runs of all seeds together: {r['wall_s'] / 60:.1f} min "
                f"(one process per seed, one after another). Command: `{r['command']}`, then `--merge`.", ""]
        return "\n".join(head + [x for s in r["seeds"] for x in _seed_md(s)])
    lines = [f"# SCBP vs peers at matched measured latency ({r['mode']} mode)", "",
             f"{r['date']}, wall {r['wall_s'] / 60:.1f} min, {r['machine']}. Command: `{r.get('command', '')}` "
             "on an idle machine.", "",
             f"Every compared model: fine-tuned {m['epochs']} epochs on {m['train_images']:,} CIFAR-10 train images "
             f"(the product's recipe, under each seed), {m['train_seeds']} training "
             "seeds, test top-1 on the 10,000-image test split (mean +- std). Latency: the cpu target (ONNX Runtime, "
             "1 thread), p50 and the speed-up paired with the seed in the same rounds; peers matched to the SCBP "
             f"model in one interleaved run (tolerance +-{100 * r['match_tolerance']:.0f} %). SCBP: stage space "
             f"{{0, 0.25, 0.5, 0.75}}, {m['six_segment_sample']} sampled 6-segment configurations and up to "
             f"{m.get('sens_sample', 0)} of the sensitivity-chosen per-segment sets; the "
             "product's pick_for_training shortlists, the distillation proxy chooses.", ""]
    for s in r["seeds"]:
        lines += _seed_md(s)
    return "\n".join(lines)
