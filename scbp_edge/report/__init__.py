"""Reports: report.json (the source of truth), report.md, a self-contained report.html, plots.

Built from the run store's records only; imports no backend.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from scbp_edge.errors import RecordError
from scbp_edge.rank import Constraints, flops_disagreement, has_latency_budget, pareto_front, select
from scbp_edge.rank.points import points_of
from scbp_edge.records import (
    BudgetResult,
    BuildConfig,
    CandidateRow,
    FailedCandidate,
    Measurement,
    RankingPoint,
    Report,
    Selection,
    TrainedRow,
    TrainedSummary,
    TrainingPlan,
    TrainingState,
    WeightsSummary,
    compact,
    encode,
)
from scbp_edge.store import RunStore


def typed(rep: Report | dict[str, Any]) -> Report:
    """The report as its record, whether built in this process or read back from report.json.

    A report.json that does not fit raises RecordError naming the field.
    """
    return rep if isinstance(rep, Report) else Report.from_json(rep)


def _measured_with(measured: list[Measurement]) -> dict[str, list[Any]]:
    """Runtime, GPU, power mode, clock pinning...: every value seen across the measurements."""
    seen: dict[str, list[Any]] = {}
    for m in measured:
        for k, v in (m.info or {}).items():
            if v not in seen.setdefault(k, []):
                seen[k].append(v)
    return seen


PROXY_FRONT = (("proxy_accuracy", "max"), ("p50_ms", "min"), ("memory_mb", "min"), ("size_mb", "min"),
               ("energy_mj", "min"))


def _selection(pts: list[RankingPoint], cons: Constraints, real: bool) -> Selection:
    """The shipped model: among the fine-tuned candidates (test accuracy) where training happened, else by proxy."""
    seed = next((p for p in pts if p.is_seed), None)
    trained = [p for p in pts if p.test_accuracy is not None]
    if seed is not None and seed.test_accuracy is not None and len(trained) > 1:
        tpts = [replace(p, accuracy=p.test_accuracy) for p in trained]
        sel = select(tpts, pareto_front(tpts), cons, seed.test_accuracy, True)
        why = " (test accuracy after fine-tuning, against the seed fine-tuned alike)"
        return replace(sel, reason=sel.reason + why, accuracy_kind="test")
    ppts = [replace(p, accuracy=p.proxy_accuracy if p.proxy_accuracy is not None else float("-inf")) for p in pts]
    sel = select(ppts, pareto_front(pts, PROXY_FRONT), cons, seed.proxy_accuracy if seed else None, real)
    return replace(sel, accuracy_kind="proxy")


def _budget_result(pts: list[RankingPoint], cons: Constraints, sel: Selection) -> BudgetResult | None:
    """For a latency budget: what was best inside it and how far it fell from the seed."""
    if not has_latency_budget(cons):
        return None
    seed = next((p for p in pts if p.is_seed), None)
    best = next((p for p in pts if p.id == sel.id), None)
    kind = sel.accuracy_kind

    def acc(p: RankingPoint | None) -> float | None:
        return None if p is None else p.test_accuracy if kind == "test" else p.proxy_accuracy

    ba, sa = acc(best), acc(seed)
    return BudgetResult(cons.max_latency_ms, cons.speedup, sel.id, len(sel.feasible), kind,
                        best.speedup if best else None, ba, sa, ba - sa if ba is not None and sa is not None else None)


def _training_state(t: TrainingPlan | None, rows: list[CandidateRow]) -> TrainingState | None:
    """The fine-tune stage's plan and progress; a network counts as done once a row of it holds its training."""
    if t is None:
        return None
    # the plan's list is written at the stage's start and end only: an interrupted stage's finished networks
    # are in the rows (each committed as it finished)
    done = set(t.done) | {r.network for r in rows if r.trained is not None and r.network in t.networks}
    return TrainingState(**vars(t), interrupted=t.state != "done", trained=len(done), wanted=len(t.networks))


def _rows(cands: list[dict[str, Any]]) -> tuple[list[CandidateRow], int]:
    """The readable rows as records, and how many this version cannot read (reported missing, not fatal)."""
    rows, bad = [], 0
    for c in cands:
        try:
            rows.append(CandidateRow.from_row(c))
        except RecordError:
            bad += 1
    return rows, bad


def build_report(store: RunStore) -> Report:
    """The report (from whatever rows can be read, if the database is damaged)."""
    run, done = store.manifest(), store.progress()
    cfg = run.config or BuildConfig()  # a run stopped before it stored one: the defaults
    cands, unreadable = store.salvage()
    rows, bad = _rows(cands)
    pts = points_of(rows)
    kinds = {r.accuracy.kind for r in rows if r.accuracy}
    real = bool(kinds) and not any("stand-in" in k for k in kinds)
    cons = cfg.constraints
    sel = _selection(pts, cons, real)
    measured = [r.measurement for r in rows if r.status == "measured" and r.measurement]
    return Report(
        run=run.facts(), fingerprints=run.fingerprints, data=run.data,
        accuracy_kind=tuple(sorted(kinds)),
        counts={s: sum(r.status == s for r in rows) for s in ("pending", "exported", "measured", "failed")},
        unreadable_rows=unreadable + bad, candidates=tuple(cands), points=tuple(pts),
        front=tuple(pareto_front(pts, PROXY_FRONT)), selection=sel,
        seed_point=next((p for p in pts if p.is_seed), None),
        trained=_trained_summary(pts), training=_training_state(done.training, rows),
        budget_result=_budget_result(pts, cons, sel),
        budget=done.budget, classifier_replaced=done.classifier_replaced,
        stage_seconds=done.stage_seconds,
        weights=_weights_summary(rows, cfg, None if done.teacher is None else compact(done.teacher)),
        flops_vs_measured=flops_disagreement(pts),
        energy_note=tuple(sorted({m.energy.reason for m in measured if m.energy.reason})),
        energy_sources=tuple(sorted({m.energy.source for m in measured if m.energy.mj_per_inference is not None})),
        measured_with=_measured_with(measured),
        failed=tuple(FailedCandidate(r.id, r.stage, r.error) for r in rows if r.status == "failed"),
    )


def write_reports(run_dir: Path, store: RunStore) -> Report:
    """Write report.json, report.md, report.html and plots into ``run_dir``."""
    from scbp_edge.report.card import summary_card
    from scbp_edge.report.plots import write_plots
    from scbp_edge.report.render import render_html, render_markdown

    rep = build_report(store)
    rep = replace(rep, card=summary_card(rep, str(run_dir)), run_dir=str(run_dir))
    (run_dir / "report.json").write_text(json.dumps(encode(rep), indent=2, default=str))
    plots = write_plots(run_dir, rep)
    (run_dir / "report.md").write_text(render_markdown(rep, plots, str(run_dir)))
    (run_dir / "report.html").write_text(render_html(rep, plots, str(run_dir)))
    return rep


def _weights_summary(rows: list[CandidateRow], cfg: BuildConfig, teacher: Any) -> WeightsSummary:
    """How the candidates' weights were made: channel criterion, reconstruction (what it did, where it could not)."""
    recs = {r.network: r.accuracy.reconstruction if r.accuracy else None for r in rows}
    recs = {n: r for n, r in recs.items() if r}
    done = [r for r in recs.values() if r.applied]
    kept: dict[str, Any] = {}
    for r in done:
        kept.update(r.kept_l1)
    skipped = sorted({r.reason for r in recs.values() if not r.applied and r.reason != "nothing pruned"})
    secs = sorted(r.seconds for r in done)
    return WeightsSummary(cfg.criterion, cfg.reconstruct, len(done), tuple(skipped),
                          max((r.images for r in done), default=0), secs[len(secs) // 2] if secs else None, kept,
                          tuple(sorted({n for r in done for n in r.strong_ridge})), teacher,
                          tuple(sorted({n for r in done for n in r.residual})))


def _trained_summary(pts: list[RankingPoint]) -> TrainedSummary:
    """Trained candidates vs the equally trained seed, and how well the proxy predicted them."""
    rows = [p for p in pts if p.test_accuracy is not None]
    seed = next((p for p in rows if p.is_seed), None)
    seed_acc = seed.test_accuracy if seed else None
    out = []
    for p in sorted(rows, key=lambda p: p.p50_ms):
        assert p.test_accuracy is not None
        out.append(TrainedRow(p.id, p.precision, p.proxy_accuracy, p.test_accuracy, p.p50_ms, p.params, p.speedup,
                              p.params / seed.params if seed else None,
                              p.test_accuracy - seed_acc if seed_acc is not None else None))
    spearman = None
    ranked = [p for p in rows if p.proxy_accuracy is not None]
    # a constant list has no ranking: scipy would warn (ConstantInputWarning) and answer NaN
    if len(ranked) >= 3 and len({p.proxy_accuracy for p in ranked}) > 1 and len({p.test_accuracy for p in ranked}) > 1:
        from scipy.stats import spearmanr

        rho = spearmanr([p.proxy_accuracy for p in ranked], [p.test_accuracy for p in ranked]).statistic
        spearman = None if rho != rho else float(rho)
    return TrainedSummary(seed_acc, tuple(out), spearman)
