"""The build's training stage: the budget's shortlist, an optional second proxy, one-shot fine-tuning.

Networks are picked by :func:`scbp_edge.rank.pick.pick_for_training` (inside
the latency budget by proxy, or spread along the front), fine-tuned once in
fp32 with the seed's network as the equally trained reference (or the seed as
it came, where that scores better on the validation split), then quantized
for each precision they are searched at; every figure is committed per
candidate as it arrives, and the store remembers that training is under way,
so an interrupted build says so in its report.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from scbp_edge.pipeline.config import BuildConfig
from scbp_edge.pipeline.prepare import Prepared
from scbp_edge.pipeline.stages import by_network, int8_settings
from scbp_edge.pipeline.ui import console, progress
from scbp_edge.rank.pick import pick_for_training
from scbp_edge.rank.points import points_of
from scbp_edge.records import CandidateRow, Proxy, TeacherChoice, TrainingPlan, TrainingResult, compact, encode
from scbp_edge.records.task import DistillScore, ProxyContext, ProxyJob, Score, TrainContext, TrainedNetwork, TrainJob
from scbp_edge.store import RunStore


def train_stage(prep: Prepared, store: RunStore, run_dir: Path, cfg: BuildConfig, executor) -> None:
    """Shortlist, second proxy where asked, fine-tune the picks and the seed, quantize, store test accuracies."""
    if cfg.top_k <= 0 or prep.data is None:
        return
    pts = points_of(store.rows())
    shortlist = cfg.top_k * 2 if cfg.proxy == "distill" else cfg.top_k
    picks = pick_for_training(pts, shortlist, cfg.constraints, cfg.margin)
    if cfg.proxy == "distill" and picks:
        _second_proxy(prep, store, cfg, executor, list(picks))
        pts = points_of(store.rows())
        picks = pick_for_training([p for p in pts if p.network in picks], cfg.top_k, cfg.constraints, cfg.margin)
    nets = by_network(store.rows())
    seed_net = next((r.network for rs in nets.values() for r in rs if r.reference == "seed" and r.status == "measured"),
                    None)
    wanted = [n for n in [*picks, seed_net] if n is not None]
    todo = [n for n in wanted if any(r.trained is None and r.status == "measured" for r in nets[n])]
    store.update_progress(training=TrainingPlan("running", tuple(wanted), dict(picks),
                                                tuple(n for n in wanted if n not in todo)))
    seconds = _shares(prep, cfg, wanted, nets) if cfg.train_minutes else {}
    # The seed first: the pruned networks learn from the better of it and the seed as it came.
    first = [n for n in todo if n == seed_net]
    if first:
        _fine_tune(prep, store, run_dir, cfg, executor, {n: nets[n] for n in first}, seconds, None)
    rest = [n for n in todo if n != seed_net]
    if rest:
        teacher = _teacher(prep, store, run_dir, seed_net) if cfg.distill else None
        _fine_tune(prep, store, run_dir, cfg, executor, {n: nets[n] for n in rest}, seconds, teacher)
    store.update_progress(training=TrainingPlan("done", tuple(wanted), dict(picks), tuple(wanted)))


def split_budget(total_s: float, step_s: dict[str, float]) -> dict[str, float]:
    """Seconds per network, in proportion to its measured step time: every network gets about the same epochs."""
    whole = sum(step_s.values())
    return {n: total_s * s / whole for n, s in step_s.items()}


def _shares(prep: Prepared, cfg: BuildConfig, wanted: list[str], nets: dict[str, list[CandidateRow]]
            ) -> dict[str, float]:
    """--train-minutes shared out by each network's measured training speed (the probe's time counts too)."""
    from scbp_edge.accuracy import step_seconds

    start = time.perf_counter()
    x, y = prep.data.timing_batch(prep.wb.seed.spec)
    step = {}
    for n in wanted:
        ratios = list(nets[n][0].ratios)
        teacher = prep.wb.seed.model if cfg.distill and any(ratios) else None
        step[n] = step_seconds(prep.wb.deriver.derive(ratios, scopes=nets[n][0].scopes), x, y, teacher=teacher)
    left = cfg.train_minutes * 60 - (time.perf_counter() - start)
    # prepare() refused a budget too small for the seed; train() still runs its minimum steps where a share is less
    return split_budget(max(left, 0.0), step)


def _teacher(prep: Prepared, store: RunStore, run_dir: Path, seed_net: str | None) -> dict[str, Any] | None:
    """The fine-tuned seed's weights where the seed reference kept them (they beat the seed as it came), else None.

    On a user's own data the seed fine-tuned there is usually the stronger
    teacher (benchmarks/results/recipe.md); the seed's task judged both on the
    validation split, and the choice is kept in the run.
    """
    from scbp_edge.derive.io import load_derived
    from scbp_edge.records import seed_judgement

    path = run_dir / "trained" / f"{seed_net}.pt"
    rows = store.rows() if seed_net is not None else []
    judged = next((j for r in rows if r.network == seed_net and (j := seed_judgement(r.trained))), None)
    if judged is None or not path.is_file():
        store.update_progress(teacher=TeacherChoice("seed", why="no fine-tuned seed or no validation split"))
        return None
    chosen = "fine-tuned seed" if judged.kept == "fine-tuned" else "seed"
    scores = {"seed": judged.as_it_came, "fine-tuned seed": judged.fine_tuned}
    store.update_progress(teacher=TeacherChoice(chosen, validation_accuracy=scores, val_images=judged.images))
    return load_derived(path)[0].state_dict() if chosen != "seed" else None


def _fine_tune(prep: Prepared, store: RunStore, run_dir: Path, cfg: BuildConfig, executor,
               nets: dict[str, list[CandidateRow]], seconds: dict[str, float],
               teacher: dict[str, Any] | None) -> None:
    from scbp_edge.derive.io import write_derived
    from scbp_edge.tasks import train_network

    spec = prep.wb.seed.spec
    (run_dir / "trained").mkdir(exist_ok=True)
    done: list[str] = []
    per = 1 if seconds else cfg.epochs  # a time budget: the epochs that fit are known only while training
    budget = f"{sum(seconds[n] for n in nets) / 60:.1f} min" if seconds else f"{cfg.epochs} epochs"
    with progress() as prog:
        task = prog.add_task(f"fine-tuning {len(nets)} network(s) x {budget} ({executor.name})",
                             total=len(nets) * per)

        def on_result(net: str, res: TrainedNetwork | None, err: str | None) -> None:
            done.append(net)
            prog.update(task, completed=len(done) * per)
            rows = nets[net]
            if res is None:
                for r in rows:
                    store.update(r.id, stage="train", error=err)
                return
            w = res.weights
            write_derived(run_dir / "trained" / f"{net}.pt", w.state, spec, ignored=w.ignored, keep=w.keep,
                          ratios=list(rows[0].ratios), candidate_id=net,
                          extra={"reconstruction": encode(res.reconstruction), "criterion": res.criterion,
                                 "trained": {**encode(res.stats or {}), **({"validation": res.validation}
                                                                           if res.validation else {})},
                                 "teacher": res.teacher})
            (run_dir / "trained" / f"{net}.onnx").write_bytes(res.onnx.data)
            for r in rows:
                _commit_trained(store, run_dir, cfg, net, r, res)

        assert prep.data is not None  # train_stage runs only with data
        ctx = TrainContext(prep.payload(cfg), prep.data.for_training(spec), cfg.epochs, cfg.lr, cfg.init,
                           cfg.distill, int8_settings(cfg, prep), qat_epochs=cfg.qat_epochs,
                           qat_threshold=cfg.qat_threshold, flip=cfg.augment == "flip", teacher_state=teacher,
                           refine_seconds=cfg.refine_seconds)
        jobs = [TrainJob(n, rows[0].ratios, tuple(r.precision for r in rows), seconds.get(n), rows[0].scopes)
                for n, rows in nets.items()]
        executor.map(train_network, jobs, ctx, on_result, gpu=True,
                     on_progress=None if seconds else lambda: prog.advance(task))


def _commit_trained(store: RunStore, run_dir: Path, cfg: BuildConfig, net: str, row: CandidateRow,
                    res: TrainedNetwork) -> None:
    v = res.per_precision[row.precision]
    score = v.accuracy if isinstance(v.accuracy, Score) else None
    own = v.artifact is not None and score is not None  # the fine-tuned network quantized for this precision
    rel = f"trained/{net}_{row.precision}.onnx" if own else f"trained/{net}.onnx"
    extra = {"kind": score.kind, "calibration": v.calibration, "qat": score.qat,
             "ptq_test_accuracy": score.value if score.ptq_value is None else score.ptq_value} if own else {}
    trained = TrainingResult(
        test_accuracy=score.value if v.failure is None and score else None, fp32_test_accuracy=res.test_accuracy,
        test_accuracy_before=res.test_accuracy_before, epochs=res.stats.epochs if res.stats else cfg.epochs,
        steps=res.stats.steps if res.stats else None, train_seconds=res.stats.seconds if res.stats else None,
        init=cfg.init, distill=cfg.distill,
        teacher=res.teacher, augment=cfg.augment, lr=cfg.lr, train_images=res.train_images,
        test_images=res.test_images, checkpoint=f"trained/{net}.pt", onnx=rel,
        test_correct=score.correct if v.failure is None and score else None,  # per image: paired with the seed's
        validation=res.validation,  # the seed: as it came vs fine-tuned, and which was kept
        extra=extra)
    if v.failure is not None:
        store.update(row.id, stage=v.failure.stage, error=v.failure.error, trained=encode(trained))
        return
    if own:
        (run_dir / rel).write_bytes(v.artifact)
    store.update(row.id, trained=encode(trained))


def _second_proxy(prep: Prepared, store: RunStore, cfg: BuildConfig, executor, networks: list[str]) -> None:
    """A short distillation fine-tune of each shortlisted network, scored on the validation split."""
    from scbp_edge.tasks import distill_proxy

    nets = by_network(store.rows())
    todo = [n for n in networks if not all(r.accuracy and r.accuracy.extra.get("distill") for r in nets[n])]
    if not todo or prep.data is None:
        return
    with progress() as prog:
        task = prog.add_task(f"second proxy: short distillation of {len(todo)} shortlisted networks",
                             total=len(todo))

        def on_result(net: str, res: DistillScore | None, err: str | None) -> None:
            prog.advance(task)
            if res is None:
                console.print(f"warning: second proxy of {net} failed ({err}); it keeps its adaptive-BN proxy",
                              markup=False)
                return
            rows = nets[net]
            fp32 = next((r.accuracy.value for r in rows if r.precision == "fp32" and r.accuracy), None)
            for r in rows:
                acc = r.accuracy or Proxy(None, "")
                # a quantized row keeps the loss its own artifact showed against fp32 under adaptive BN
                drop = (fp32 - acc.value) if fp32 is not None and acc.value is not None else 0.0
                acc = replace(acc, value=res.value - drop, extra=dict(acc.extra, adabn=acc.value, distill=encode(res)),
                              kind=f"proxy: {res.steps} distillation steps, then top-1 on validation split")
                store.update(r.id, accuracy=compact(acc))

        ctx = ProxyContext(prep.payload(cfg), prep.data.for_training(prep.wb.seed.spec), prep.data.proxy())
        jobs = [ProxyJob(n, nets[n][0].ratios, nets[n][0].scopes) for n in todo]
        executor.map(distill_proxy, jobs, ctx, on_result, gpu=True)
