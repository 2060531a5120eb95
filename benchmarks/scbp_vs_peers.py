"""SCBP against its peers at matched measured latency (issue 13): the product's headline.

Per seed (cifar-resnet20 and cifar-resnet56 from ../shared), as a user's build would:
1. every SCBP candidate of the stage space and a sample of a 6-segment space is
   derived, scored by adaptive BN on a validation split and measured on the cpu
   target (1 thread, paired with the seed in every round);
2. for each speed-up budget (1.25x, 1.5x, 2.0x) the product's own
   ``pick_for_training`` shortlists candidates inside it (plus a margin); the
   second-stage distillation proxy picks the SCBP model among those inside;
3. the peers - uniform width (the SCBP deriver with one ratio in every segment),
   Torch-Pruning L1 uniform and Torch-Pruning global - are bisected on their
   pruning ratio until their paired speed-up matches the SCBP model's; one
   interleaved run of every compared model then checks the match (p50 within
   +-3 %);
4. every compared model gets the same fine-tune - the product's recipe: its
   learning rate, warm-up and cosine, shifts and flips, distillation from the
   better of the seed and the seed fine-tuned first - with several training
   seeds; test top-1 on the full 10,000-image test split, mean +- std, and the
   test top-1 before training.
SCBP candidates are derived as the build derives them (channels chosen, then
reconstructed on 512 training images); each budget's SCBP pick is also
fine-tuned with inherited weights (``--no-reconstruct``), and the peers stay what
their users get.  It also measures each proxy's Spearman correlation with the
fine-tuned accuracy, distillation on/off at equal budget, and each segment's
latency/accuracy sensitivity.  Writes benchmarks/results/scbp_vs_peers{,_full}.{json,md}.

Run alone on an idle machine:  .venv/bin/python benchmarks/scbp_vs_peers.py   (``--full``: GPU machines)
or one process per seed, then merge:  ... --seeds cifar-resnet20; ... --seeds cifar-resnet56; ... --merge
"""

from __future__ import annotations

import copy
import json
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from _common import OUT, ROOT, SEEDS, SHARED, cifar, log, missing_shared, parser, publish
from peers_report import lone_segment, markdown, summarize

MODES = {
    # Both seeds in <= 90 min alone on the 2-core VM: 8,000 images (10,000 took r56 alone near an hour), and the
    # distillation on/off ablation on cifar-resnet20 only.
    "default": {"seeds": ["cifar-resnet20", "cifar-resnet56"], "train_images": 8000, "epochs": 2, "train_seeds": 3,
                "val_images": 2000, "six_segment_sample": 30, "sens_sample": 30, "k": 2, "margin": 1,
                "ablation_seeds": ["cifar-resnet20"]},
    "full": {"seeds": ["cifar-resnet20", "cifar-resnet56"], "train_images": 45000, "epochs": 15, "train_seeds": 3,
             "val_images": 5000, "six_segment_sample": 200, "sens_sample": 100, "k": 3, "margin": 2},
    # default's protocol with fewer fine-tune images and smaller samples: for when an hour is too long
    "quick": {"seeds": ["cifar-resnet20", "cifar-resnet56"], "train_images": 5000, "epochs": 2, "train_seeds": 3,
              "val_images": 2000, "six_segment_sample": 20, "sens_sample": 20, "k": 2, "margin": 1},
    "smoke": {"seeds": ["cifar-resnet20"], "train_images": 512, "epochs": 1, "train_seeds": 2, "val_images": 200,
              "six_segment_sample": 4, "sens_sample": 4, "k": 1,
              "margin": 1},  # checks the code paths in minutes; figures meaningless
}
BUDGETS = (1.25, 1.5, 2.0)
RATIOS = "0,0.25,0.5,0.75"
FINE = "0,0.125,0.25,0.375,0.5,0.625,0.75"  # each segment pruned alone at these: the sensitivity probes
FLIP = True  # CIFAR's classes survive a mirror: the benchmarks fine-tune with --augment flip
MATCH = 0.03
PEERS = ("uniform", "tp-uniform", "tp-global")


def recipe() -> dict[str, Any]:
    """The product's fine-tune defaults (what a build uses), plus the CIFAR benchmarks' flips."""
    from scbp_edge.lab import WARMUP, BuildConfig

    cfg = BuildConfig()
    return {"lr": cfg.lr, "warmup": WARMUP, "flip": FLIP, "criterion": cfg.criterion, "calib_images": cfg.calib_images}


class Data:
    """The shared CIFAR-10 splits as tensors: fine-tune subset, calibration and BN images, validation, test."""

    def __init__(self, m: dict[str, Any], mean, std) -> None:
        from scbp_edge.lab import split_val

        train = cifar("train")
        rest, val = split_val(train, 0.1, 0)
        rng = np.random.default_rng(0)
        self.x, self.y = rest.subset(rng.permutation(len(rest))[: m["train_images"]]).tensors(mean, std)
        # as a build samples them: calibration (seed 2) and BN images (seed 1) from the train split
        pick = lambda n, s: np.random.default_rng(s).permutation(len(rest))[:n]  # noqa: E731
        self.calib_x, self.calib_y = rest.subset(pick(recipe()["calib_images"], 2)).tensors(mean, std)
        self.bn_x, _ = rest.subset(pick(1024, 1)).tensors(mean, std)
        self.val_x, self.val_y = val.subset(rng.permutation(len(val))[: m["val_images"]]).tensors(mean, std)
        self.test_x, self.test_y = cifar("test").tensors(mean, std)


class Lab:
    """One seed: its candidates, their proxies, measurements and fine-tuned accuracies."""

    def __init__(self, name: str, m: dict[str, Any], mode: str) -> None:
        from scbp_edge.api import SeedOptions, Workbench
        from scbp_edge.lab import load_target

        ckpt = str(SHARED / "seeds/cifar10-resnet" / SEEDS[name])
        self.name, self.m = name, m
        self.stage = Workbench(SeedOptions(name, ckpt))
        self.six = Workbench(SeedOptions(name, ckpt, segments="6"), self.stage.seed)
        self.teacher = copy.deepcopy(self.stage.seed.model).eval()  # pristine: never adapted, never trained
        self.student_teacher = self.teacher  # replaced by the seed fine-tuned first, where it is the better one
        self.shape = tuple(self.stage.seed.spec.input_shape)
        self.data = Data(m, self.stage.seed.spec.mean, self.stage.seed.spec.std)
        d = self.data
        for wb in (self.stage, self.six):  # SCBP as the build derives it: channels chosen, weights re-solved
            wb.calibrate(d.calib_x, d.calib_y, criterion=recipe()["criterion"])
        # inherited weights: the uniform-width peer (what its users get) and SCBP's --no-reconstruct ablation
        self.plain = {n: Workbench(SeedOptions(name, ckpt, segments=seg), self.stage.seed)
                      for n, seg in ((3, "stages"), (6, "6"))}
        self.target = load_target("cpu")
        self.work = ROOT / "benchmarks" / ".work" / f"peers-{mode}-{name}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict[str, Any]] = {}
        self.models: dict[str, torch.nn.Module] = {}
        self.seed_key = ""
        self.state: dict[str, Any] = {"settings": m}
        self.wall0, self.t0 = 0.0, time.perf_counter()  # seconds spent by earlier, killed runs of this seed

    # -- candidates ------------------------------------------------------------------------------
    def add(self, key: str, family: str, model: torch.nn.Module, ratios=None) -> None:
        """Export, then the build's own proxy (adaptive BN where it scores better than the inherited statistics)."""
        from scbp_edge.lab import ProxyData, export_onnx, model_cost, proxy_accuracy

        cost = model_cost(model, self.shape)
        export_onnx(model, self.shape, self.work / f"{key}.onnx")
        d = self.data
        proxy = proxy_accuracy(model, ProxyData(d.bn_x, d.val_x, d.val_y, d.calib_x), cost.params, cost.params)
        self.rows[key] = {"config": key, "family": family, "ratios": ratios, "params": cost.params,
                          "macs": cost.macs, "adabn": proxy.value}
        self.models[key] = model

    def measure(self, keys: list[str]) -> dict[str, tuple[float, float]]:
        """key -> (p50 ms, paired speed-up over the seed timed in the same rounds), one interleaved run."""
        from scbp_edge.lab import Item, measure_items, runtime_for

        got: dict[str, tuple[float, float]] = {}

        def on_result(k: str, meas, err) -> None:
            if meas is not None:
                got[k] = (meas.latency.p50_ms, meas.paired.speedup if meas.paired else float("nan"))

        items = [Item(k, self.work / f"{k}.onnx") for k in keys]
        ref = Item("reference-seed", self.work / f"{self.seed_key}.onnx")
        measure_items(items, self.target, runtime_for(self.target), [], chunk=8, on_result=on_result, reference=ref)
        return got

    def search(self) -> None:
        for wb, label, limit in ((self.stage, "scbp-stages", None), (self.six, "scbp-6seg",
                                                                     self.m["six_segment_sample"])):
            for c in wb.space(RATIOS, limit=limit):
                if c.reference and label == "scbp-6seg":
                    continue  # the seed and uniform references once, from the stage space
                fam = "seed" if c.reference == "seed" else label
                self.add(c.id, fam, wb.candidate(c.ratios)[1], c.ratios)
                self.rows[c.id]["reference"] = c.reference
                if fam == "seed":
                    self.seed_key = c.id
        log(f"{self.name}: {len(self.rows)} candidates derived and scored; measuring")
        self.measure_into(list(self.rows))

    def measure_into(self, keys: list[str]) -> None:
        if keys:
            for k, (p50, sp) in self.measure(keys).items():
                self.rows[k].update(p50_ms=p50, speedup=sp)

    def add_space(self, ratios: str, limit: int | None = None, wb=None, family: str = "scbp-sens") -> list[str]:
        """Derive and score up to ``limit`` configurations of ``ratios`` (``wb``: stage segments) that are new networks.

        A configuration that rounds to a network already here (another ratio, the same widths) is skipped.
        """
        import random

        wb = wb or self.stage
        n = wb.num_segments
        plan = lambda ratios: tuple(sorted(wb.deriver.plan(ratios).items()))  # noqa: E731
        seen = {plan(r["ratios"]) for r in self.rows.values() if r.get("ratios") and len(r["ratios"]) == n}
        fresh = []
        for c in wb.space(ratios):
            key = plan(c.ratios)
            if c.id not in self.rows and not c.reference and key not in seen:
                seen.add(key)
                fresh.append(c)
        if limit is not None and len(fresh) > limit:
            fresh = sorted(random.Random(0).sample(fresh, limit), key=lambda c: c.id)
        for c in fresh:
            self.add(c.id, family, wb.candidate(c.ratios)[1], c.ratios)
        return [c.id for c in fresh]

    def sensitivity_space(self, wb=None, family: str = "scbp-sens") -> dict[str, Any]:
        """Method change: per-segment ratio sets chosen from each segment pruned alone, measured on the target.

        Every segment is probed alone on a finer grid (FINE; a ratio that rounds to a width already probed
        is skipped by ``add_space``), then ``ratio_sets_from_sensitivity`` keeps the ratios that buy
        measured speed for their adaptive-BN drop and a sample of the product of those sets joins the SCBP
        candidates.
        """
        from scbp_edge.lab import SegmentProbe, ratio_sets_from_sensitivity

        wb = wb or self.stage
        n = wb.num_segments
        new = [k for s in range(n)
               for k in self.add_space("/".join(FINE if i == s else "0" for i in range(n)), None, wb, family)]
        self.measure_into(new)
        seed = self.rows[self.seed_key]
        alone = {k: lone_segment(r, ("scbp-stages", "scbp-6seg", family), n) for k, r in self.rows.items()}
        probes = [SegmentProbe(seg, self.rows[k]["ratios"][seg], self.rows[k]["speedup"],
                               seed["adabn"] - self.rows[k]["adabn"]) for k, seg in alone.items() if seg is not None]
        sets = ratio_sets_from_sensitivity(probes, n)
        text = "/".join(",".join(f"{v:g}" for v in st) for st in sets)
        added = self.add_space(text, self.m["sens_sample"], wb, family)
        log(f"{self.name}: sensitivity sets {text}: {len(added)} more candidates; measuring")
        self.measure_into(added)
        return {"sets": sets, "ratios": text, "probes": len(new), "added": len(added)}

    # -- the SCBP pick per budget ---------------------------------------------------------------
    def distill(self, key: str) -> float:
        from scbp_edge.lab import PROXY_STEPS, distill_score

        if "distill" not in self.rows[key]:
            d = self.data
            self.rows[key]["distill"] = distill_score(self.model(key), self.teacher, d.x, d.y, d.val_x, d.val_y,
                                                      d.bn_x, steps=PROXY_STEPS)
        return self.rows[key]["distill"]

    def scbp_pick(self, budget: float, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        from scbp_edge.lab import Constraints, pick_for_training, within_latency_budget

        cons = Constraints(speedup=budget)
        # the fields the product's shortlist reads from a ranking point
        pts = [SimpleNamespace(id=k, network=k, reference=r.get("reference"), proxy_accuracy=r["adabn"],
                               precision="fp32", p50_ms=r["p50_ms"], speedup=r["speedup"])
               for k, r in self.rows.items() if r["family"] not in ("peer", *exclude) and r.get("p50_ms")]
        picks = pick_for_training(pts, self.m["k"], cons, margin=self.m["margin"])
        inside = [p for p in pts if p.id in picks and within_latency_budget(cons, p)]
        if not inside:
            return {"budget": budget, "scbp": None, "shortlist": picks}
        scores = {p.id: self.distill(p.id) for p in pts if p.id in picks}
        best = max(inside, key=lambda p: scores[p.id])
        by_adabn = max(inside, key=lambda p: p.proxy_accuracy)
        return {"budget": budget, "scbp": best.id, "adabn_choice": by_adabn.id, "shortlist": picks,
                "distill_scores": scores}

    # -- peers, matched on measured speed ------------------------------------------------------
    def peer_model(self, family: str, r: float) -> torch.nn.Module:
        from scbp_edge.lab import magnitude_prune

        if family == "uniform":
            return self.plain[3].deriver.derive([r] * self.stage.num_segments)
        return magnitude_prune(self.teacher, self.shape, r, global_pruning=family == "tp-global",
                               ignored=self.stage.deriver.ignored, round_to=8)

    def bisect(self, family: str, scbp: str, tag: str, steps: int = 8) -> list[str]:
        """Bisect the peer's ratio, each probe timed beside the SCBP model; the three closest probes stay."""
        from scbp_edge.lab import export_onnx, model_cost

        lo, hi, probes, smallest = 0.0, 0.9, [], None  # smallest: (params, ratio) of the smallest probe so far
        for i in range(steps):
            r = round((lo + hi) / 2, 4)
            key = f"{family}-{r:.4f}-{tag}{i}"
            model = self.peer_model(family, r)
            params = model_cost(model, self.shape).params
            if smallest and r > smallest[1] and params > smallest[0]:
                # Torch-Pruning is not monotone at high ratios (max_pruning_ratio, round_to): a higher ratio
                # kept more parameters, e.g. TP global at 0.7875 kept 4x more than at 0.45 on cifar-resnet56.
                # Such a ratio is an upper bound, not a probe.
                hi = r
                continue
            if smallest is None or params < smallest[0]:
                smallest = (params, r)
            export_onnx(model, self.shape, self.work / f"{key}.onnx")
            got = self.measure([scbp, key])
            ratio = got[key][0] / got[scbp][0] if key in got and scbp in got else float("inf")
            probes.append((abs(ratio - 1), key, model, r))
            if abs(ratio - 1) < 0.01:
                break
            lo, hi = (r, hi) if ratio > 1 else (lo, r)  # slower than SCBP: prune more
        keep = sorted(probes, key=lambda p: p[0])[:3]  # the final interleaved run picks
        for _, key, model, r in keep:
            if key not in self.rows:
                self.add(key, "peer", model)
                self.rows[key].update(peer=family, ratio=r)
        return [k for _, k, _, _ in keep]

    def match(self, picks: list[dict[str, Any]], extra: list[str]) -> None:
        """Bisect every peer for every budget, then one interleaved run settles each match."""
        cands: dict[tuple[float, str], list[str]] = {}
        for p in picks:
            if p["scbp"]:
                for fam in PEERS:
                    cands[(p["budget"], fam)] = self.bisect(fam, p["scbp"], f"b{p['budget']}-")
        keys = list(dict.fromkeys([self.seed_key, *[p["scbp"] for p in picks if p["scbp"]], *extra,
                                   *[k for ks in cands.values() for k in ks]]))
        final = self.measure(keys)
        for k, (p50, sp) in final.items():
            self.rows[k].update(final_p50_ms=p50, final_speedup=sp)
        for p in picks:
            if not p["scbp"]:
                continue
            ref = final[p["scbp"]][0]
            p["peers"] = {}
            for fam in PEERS:
                best = min(cands[(p["budget"], fam)], key=lambda k, ref=ref: abs(final[k][0] / ref - 1))
                p["peers"][fam] = {"id": best, "mismatch": final[best][0] / ref - 1}

    # -- fine-tuning --------------------------------------------------------------------------
    def finetune(self, key: str, seeds: int, distill: bool = True, teacher=None, slot: str = "test_acc") -> list[float]:
        """The product's recipe; test top-1 per training seed (and once before training), kept in ``rows[key][slot]``.

        Resumable: training seeds already in the slot are not trained again, and the state is saved after each.
        """
        from scbp_edge.lab import evaluate, train

        rc, d, row = recipe(), self.data, self.rows[key]
        out = row.setdefault(slot, [])
        if len(out) >= seeds:
            return out
        row.setdefault("test_before", evaluate(self.model(key), d.test_x, d.test_y))
        model0 = self.start(key)
        for s in range(len(out), seeds):
            t = time.perf_counter()
            model = train(copy.deepcopy(model0), d.x, d.y, epochs=self.m["epochs"], lr=rc["lr"], seed=s,
                          warmup=rc["warmup"], flip=rc["flip"],
                          teacher=(teacher or self.student_teacher) if distill else None)
            out.append(evaluate(model, d.test_x, d.test_y))
            if slot == "test_acc":
                row.setdefault("train_s", []).append(round(time.perf_counter() - t, 1))
            if key == self.seed_key and s == 0 and not distill:
                torch.save(model.state_dict(), self.work / "tuned_seed.pt")
            self.save()
        return out

    def choose_teacher(self) -> dict[str, float]:
        """As the build does: the seed fine-tuned first teaches where it beats the seed as it came (validation)."""
        from scbp_edge.lab import better_teacher

        d = self.data
        tuned = copy.deepcopy(self.teacher)
        tuned.load_state_dict(torch.load(self.work / "tuned_seed.pt", weights_only=True))
        tuned.eval()
        chosen, scores = better_teacher(self.teacher, tuned, d.val_x, d.val_y)
        if chosen is tuned:
            self.student_teacher = tuned
        return scores

    def start(self, key: str) -> torch.nn.Module:
        """Where the build's fine-tune starts: an SCBP network re-solved with its classifier left inherited.

        Until issue 55 this benchmark fine-tuned the proxy's weights (classifier re-solved too), which a build
        never trains: at cifar-resnet56's 2.0x pick that start alone cost 6 pt (reconstruct_2x_cifar-resnet56.md).
        """
        r = self.rows[key]
        if r["family"] in ("peer", "scbp-inherited") or not r["ratios"] or not any(r["ratios"]):
            return self.model(key)
        return self.bench(r["ratios"]).candidate(r["ratios"], for_training=True)[1]

    def bench(self, ratios: list[float]):
        """The calibrated workbench of a configuration: stage segments (3) or six."""
        return self.stage if len(ratios) == self.stage.num_segments else self.six

    # -- resuming -----------------------------------------------------------------------------
    def model(self, key: str) -> torch.nn.Module:
        """The network of row ``key``, derived again (deterministically) when this process did not derive it."""
        if key not in self.models:
            r = self.rows[key]
            if r["family"] == "peer":
                self.models[key] = self.peer_model(r["peer"], r["ratio"])
            elif r["family"] == "scbp-inherited":
                self.models[key] = self.plain[len(r["ratios"])].deriver.derive(r["ratios"])
            else:
                self.models[key] = self.bench(r["ratios"]).candidate(r["ratios"])[1]
        return self.models[key]

    def save(self, **extra: Any) -> None:
        """Everything measured so far (rows, picks, ...), so a killed run continues from its finished rows."""
        self.state.update(extra)
        self.state.update(rows=self.rows, seed_key=self.seed_key, wall_s=self.wall0 + time.perf_counter() - self.t0)
        tmp = self.work / "state.json.tmp"
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.work / "state.json")

    def load(self) -> bool:
        """Pick up a killed run's state (same mode and settings); False when there is none to resume."""
        f = self.work / "state.json"
        if not f.is_file():
            return False
        st = json.loads(f.read_text())
        if st.get("settings") != self.m:
            log(f"{self.name}: {f} was made with other settings: starting afresh")
            return False
        self.state, self.rows, self.seed_key = st, st["rows"], st["seed_key"]
        self.wall0 = st.get("wall_s", 0.0)
        log(f"{self.name}: resuming from {f} ({self.wall0 / 60:.1f} min done before)")
        return True

    def inherited(self, key: str) -> str:
        """The same network as SCBP pick ``key`` with inherited weights (no reconstruction), added for fine-tuning."""
        ratios = self.rows[key]["ratios"]
        twin = f"{key}-inherited"
        if twin not in self.rows:
            self.add(twin, "scbp-inherited", self.plain[len(ratios)].deriver.derive(ratios), ratios)
            for k in ("p50_ms", "speedup", "final_p50_ms", "final_speedup"):  # the same network: the same latency
                if k in self.rows[key]:
                    self.rows[twin][k] = self.rows[key][k]
        return twin


def search_and_match(lab: Lab) -> None:
    """Steps 1-3: derive, score and measure the spaces, pick SCBP per budget, match the peers; saved at the end."""
    name = lab.name
    log(f"{name}: deriving the spaces")
    lab.search()
    sens = lab.sensitivity_space()
    picks = [lab.scbp_pick(b) for b in BUDGETS]
    # What the pick at 1.5x would have been without the sensitivity space: trained alike when it differs.
    mid = next((p["scbp"] for p in picks if p["budget"] == 1.5 and p["scbp"]), None)
    sens["without"] = lab.scbp_pick(1.5, exclude=("scbp-sens",))["scbp"]
    sens["with"] = mid
    alt = [sens["without"]] if sens["without"] and sens["without"] != mid else []
    log(f"{name}: SCBP picks {[p['scbp'] for p in picks]} (1.5x without the sensitivity sets: "
        f"{sens['without']}); matching the peers")
    lab.match(picks, alt)
    for p in picks:  # the same SCBP network with inherited weights: what reconstruction adds
        if p["scbp"]:
            p["inherited"] = lab.inherited(p["scbp"])
    lab.save(picks=picks, sens=sens, alt=alt, mid=mid)


def run_seed(name: str, m: dict[str, Any], mode: str, budgets: tuple[float, ...] = BUDGETS) -> dict[str, Any]:
    """One seed, resumable: a killed run started again with the same command continues from its finished rows.

    ``budgets`` picks which budgets' networks are fine-tuned now: the search and the matching cover every budget,
    so a later run with the other budgets resumes from the same state, and each result holds the budgets trained
    so far (how a seed whose run passes 40 minutes is split).
    """
    lab = Lab(name, m, mode)
    if not (lab.load() and "picks" in lab.state):
        search_and_match(lab)
    st = lab.state
    picks, sens, alt, mid = st["picks"], st["sens"], st["alt"], st["mid"]
    now = [p for p in picks if p["budget"] in budgets]
    alt = alt if 1.5 in budgets else []
    log(f"{name}: fine-tuning the seed first: it is the reference, and the teacher where it is the better one")
    lab.finetune(lab.seed_key, m["train_seeds"], distill=False)
    teacher = lab.choose_teacher()
    todo = list(dict.fromkeys([lab.seed_key, *[p["scbp"] for p in now if p["scbp"]], *alt,
                               *[p["inherited"] for p in now if p.get("inherited")],
                               *[q["id"] for p in now if p["scbp"] for q in p["peers"].values()]]))
    for i, k in enumerate(todo[1:]):
        lab.distill(k)
        log(f"{name}: fine-tuning {k} ({i + 2}/{len(todo)})")
        lab.finetune(k, m["train_seeds"])
    lab.distill(lab.seed_key)
    ablation = {}
    if m.get("ablation", True) and name in m.get("ablation_seeds", [name]) and 1.5 in budgets:
        # the seed distilled from itself as it came (the reference before this change), and the pick without a teacher
        log(f"{name}: fine-tuning the seed distilled from itself, and {mid} without distillation")
        ablation[lab.seed_key] = {"distill": lab.finetune(lab.seed_key, m["train_seeds"], True, lab.teacher,
                                                          slot="self_distilled"),
                                  "plain": lab.rows[lab.seed_key]["test_acc"]}
        if mid:
            ablation[mid] = {"distill": lab.rows[mid]["test_acc"],
                             "plain": lab.finetune(mid, m["train_seeds"], False, slot="undistilled")}
    lab.save()
    # every network fine-tuned so far, this run's budgets and earlier runs' alike
    done = [p for p in picks if not p["scbp"] or lab.rows[p["scbp"]].get("test_acc")]
    trained = [k for k, r in lab.rows.items() if r.get("test_acc")]
    return {"seed": name, "seed_key": lab.seed_key, "picks": done, "trained": trained, "ablation": ablation,
            "rows": lab.rows, "segments": lab.stage.num_segments, "sensitivity_space": sens, "teacher": teacher,
            "recipe": recipe(), "wall_s": lab.state["wall_s"]}


def merge() -> int:
    """scbp_vs_peers.{json,md} from the per-seed results of ``--seeds X`` runs (one process per seed)."""
    found = [sorted(OUT.glob(f"scbp_vs_peers_*{s}.json")) for s in SEEDS]  # default or --quick runs
    parts = [json.loads(f[0].read_text()) for f in found if f]
    if not parts:
        print("no per-seed results to merge: run --seeds first", file=sys.stderr)
        return 2
    seeds = [dict(s, mode=p["mode"], settings=p["settings"], command=p["command"], wall_s=p["wall_s"])
             for p in parts for s in p["seeds"]]
    res = dict(parts[0], seeds=seeds, merged=True, wall_s=sum(p["wall_s"] for p in parts),
               command=" && ".join(p["command"] for p in parts))
    publish(OUT, "scbp_vs_peers", res, markdown(res))
    return 0


def parse_budgets(text: str | None) -> tuple[float, ...] | None:
    """``--budgets`` as a tuple of BUDGETS (all of them when not given); None when it names anything else."""
    if not text:
        return BUDGETS
    try:
        budgets = tuple(float(b) for b in text.split(","))
    except ValueError:
        return None
    return budgets if set(budgets) <= set(BUDGETS) else None


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--full", action="store_true", help="45k images, 15 epochs (GPU machines)")
    ap.add_argument("--seeds", help="comma-separated subset of " + ",".join(SEEDS))
    ap.add_argument("--smoke", action="store_true", help="tiny settings, results under benchmarks/.work")
    ap.add_argument("--quick", action="store_true", help="half the fine-tune images, a smaller 6-segment sample")
    ap.add_argument("--merge", action="store_true", help="combine the per-seed results of earlier --seeds X runs")
    ap.add_argument("--no-ablation", action="store_true", help="skip the distillation on/off fine-tunes")
    ap.add_argument("--budgets", help="fine-tune only these budgets' networks now, e.g. 1.5 (default: all of "
                    + ",".join(map(str, BUDGETS)) + "); a later run with the rest resumes")
    a = ap.parse_args()
    if a.merge:
        return merge()
    budgets = parse_budgets(a.budgets)
    if budgets is None:
        print(f"--budgets {a.budgets}: give a comma-separated subset of {','.join(map(str, BUDGETS))}, e.g. 1.5",
              file=sys.stderr)
        return 2
    mode = "full" if a.full else "smoke" if a.smoke else "quick" if a.quick else "default"
    if problem := missing_shared():
        print(problem, file=sys.stderr)
        return 2
    m = dict(MODES[mode])
    if a.seeds:
        m["seeds"] = a.seeds.split(",")
    m["ablation"] = not a.no_ablation
    results = [run_seed(name, m, mode, budgets) for name in m["seeds"]]
    res = summarize(results, m, mode, BUDGETS, MATCH, sum(r["wall_s"] for r in results))
    res["command"] = "python benchmarks/scbp_vs_peers.py" + (f" --{mode}" if mode != "default" else "") + \
        (f" --seeds {a.seeds}" if a.seeds else "") + (" --no-ablation" if a.no_ablation else "") + \
        (f" --budgets {a.budgets}" if a.budgets else "")
    out = ROOT / "benchmarks" / ".work" if a.smoke else OUT
    out.mkdir(parents=True, exist_ok=True)
    # One seed per process (--seeds X) keeps each seed's results safe from the next one's; --merge joins them.
    suffix = "_smoke" if a.smoke else ("" if mode == "default" else f"_{mode}") + \
        (f"_{a.seeds.replace(',', '+')}" if a.seeds else "")
    publish(out, f"scbp_vs_peers{suffix}", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
