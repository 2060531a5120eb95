"""The report's opening list: seed and target, counts, FLOPs against measurement, data, weights, training."""

from __future__ import annotations

from scbp_edge.errors import RecordError
from scbp_edge.records import CandidateRow, Report, TrainingResult, WeightsSummary, seed_judgement
from scbp_edge.report.card import machine_note
from scbp_edge.report.sections import Context, Section, number


def build(ctx: Context) -> Section:
    return Section("details", bullets=tuple(_details(ctx.rep)))


def _details(rep: Report) -> list[str]:
    run, fl = rep.run, rep.flops_vs_measured
    seed, target = run.seed or {}, run.target or {}
    lines = [
        f"Seed: {seed['name']} ({seed['weights'] or 'untrained'}), "
        f"{len((run.segmentation or {})['segments'])} segments; target: {target['name']} (runtime "
        f"{target['backend']}; precisions searched: {', '.join(run.precisions)}).",
        f"Candidates: {rep.counts['measured']} measured, {rep.counts['failed']} failed "
        f"(each network at each precision).",
        f"FLOPs vs measured: Kendall tau between MACs and p50 = {number(fl.kendall_tau)}; "
        f"{len(fl.misordered_pairs)} of {fl.pairs} pairs are mis-ordered by MACs beyond a "
        f"{fl.noise_band:.0%} noise band.",
    ]
    if rep.budget_result:
        b = rep.budget_result
        lines.append(f"Latency budget: {b.inside} candidate(s) met it; the best, {b.best}, is "
                     f"{number(b.best_speedup)}x the seed's speed at {number(b.best_accuracy, 4)} % "
                     f"({b.accuracy_kind} accuracy) vs the seed's {number(b.seed_accuracy, 4)} %.")
    if rep.budget:
        mb = rep.budget
        lines.append(f"Measurement budget: {mb.measured} of {mb.measured + mb.not_measured} candidates "
                     f"measured (budget {mb.budget}), chosen near the front a per-segment latency model predicted.")
    if rep.classifier_replaced:
        c = rep.classifier_replaced
        lines.append(f"Classifier replaced: seed had {c.from_classes} classes, data {c.to_classes}; new head "
                     f"trained {c.epochs} epoch(s), seed test accuracy {c.test_accuracy:.2f} %.")
    d = rep.data
    if d:
        left = (f"; {len(d.skipped)} unreadable image(s) left out: {', '.join(d.skipped[:3])}"
                + (f" and {len(d.skipped) - 3} more" if len(d.skipped) > 3 else "")) if d.skipped else ""
        lines.append(f"Data: {d.train:,} training, {d.val:,} validation and {d.test:,} test images{left}.")
    lines += _weights_details(rep.weights)
    note = machine_note(list(rep.points))
    if note:
        lines.append(note)
    if rep.stage_seconds:
        lines.append("Time spent: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep.stage_seconds.items()) + ".")
    if rep.energy_sources:
        lines.append("Energy: mJ per inference from " + "; ".join(rep.energy_sources) + ".")
    if rep.measured_with:
        lines.append("Measured with: " + ", ".join(f"{k} {'/'.join('unknown' if x is None else str(x) for x in v)}"
                                                   for k, v in rep.measured_with.items()) + ".")
    n = next((p.test_images for p in rep.points if p.test_images), None)
    if n:
        lines.append(f"Test accuracy: on {n:,} test images, with 95 % (Wilson) intervals; 'vs seed' is the paired "
                     "difference on the same images, '~' where it is within noise (exact McNemar test, p >= 0.05).")
    lines += [x for x in (_fine_tune_line(rep), _reference_line(rep)) if x]
    tr = rep.trained
    if tr.proxy_spearman is not None:
        lines.append(f"Proxy vs fine-tuned accuracy: Spearman {tr.proxy_spearman:.2f} over the "
                     f"{len(tr.rows)} fine-tuned candidates.")
    return lines


def _trained(rep: Report) -> list[CandidateRow]:
    """The candidates with a training result, as records (report.json keeps the store's rows as stored).

    A row this version cannot read is already counted as unreadable in the report, so it is left out here.
    """
    rows = []
    for c in rep.candidates:
        try:
            rows.append(CandidateRow.from_row(c))
        except RecordError:
            continue
    return [r for r in rows if r.trained is not None]


def _fine_tune_line(rep: Report) -> str | None:
    """What each fine-tuned network got: epochs, steps and seconds (a time budget decides them while training)."""
    got: dict[str, TrainingResult] = {}
    for r in _trained(rep):
        if r.trained is not None and r.trained.steps is not None:
            got.setdefault(r.network, r.trained)
    if not got:
        return None
    minutes = rep.run.config.train_minutes if rep.run.config else None
    how = (f"within --train-minutes {minutes:g}, shared by each network's measured step time"
           if minutes else "for --epochs")
    return f"Fine-tune ({how}): " + "; ".join(
        f"{n} {t.epochs or 0:g} epoch(s), {t.steps} steps, {t.train_seconds or 0:.0f} s" for n, t in got.items()) + "."


def _reference_line(rep: Report) -> str | None:
    """Which seed the pruned networks are compared with: as it came or fine-tuned, whichever won on validation."""
    v = next((j for j in (seed_judgement(r.trained) for r in _trained(rep)) if j), None)
    if v is None:
        return None
    why = ("its fine-tune scored lower, so it ships as it came" if v.kept == "as it came"
           else "its fine-tune is what ships")
    return (f"Seed reference: the seed {v.kept} (validation top-1: as it came {v.as_it_came:.2f} %, "
            f"fine-tuned {v.fine_tuned:.2f} %, {v.images:,} images); {why}.")


def _weights_details(w: WeightsSummary) -> list[str]:
    """How the weights were made: channel criterion, reconstruction and where it could not help, the teacher."""
    if w.reconstructed:
        text = (f"Weights: channels by {w.criterion}; {w.reconstructed} pruned network(s) re-solved against "
                f"the seed on {w.images} training images (median {w.median_seconds or 0:.2f} s each).")
        if w.kept_l1:
            named = "; ".join(f"{k} ({v})" for k, v in sorted(w.kept_l1.items())[:5])
            more = f" and {len(w.kept_l1) - 5} more" if len(w.kept_l1) > 5 else ""
            text += f" Layers that kept their inherited weights: {named}{more}."
        if w.residual:
            text += (f" {len(w.residual)} residual writer(s) (convolutions whose output is added to a shortcut) "
                     "were fitted to the seed's block output minus the pruned network's own shortcut "
                     "(--residual-solve).")
        if w.strong_ridge:
            text += (f" {len(w.strong_ridge)} layer(s) had fewer calibration samples than unknowns and were "
                     "solved with a stronger ridge (more --calib-images fits them better).")
    else:
        text = (f"Weights: channels by {w.criterion}; inherited, not reconstructed "
                f"({'; '.join(w.skipped) or 'nothing was pruned'}).")
    lines = [text]
    t = w.teacher
    if t and t.get("validation_accuracy"):
        v = t["validation_accuracy"]
        lines.append(f"Fine-tune teacher: the {t['chosen']} (validation top-1: seed as it came {v['seed']:.2f} %, "
                     f"fine-tuned {v['fine-tuned seed']:.2f} %, {t['val_images']} images).")
    return lines
