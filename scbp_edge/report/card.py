"""The report's first screen: which model, how much faster, how much worse, and how to ship it.

One JSON-serialisable card, rendered alike at the top of report.md, the HTML
report, the GitHub job summary and the terminal.  Every number has its unit;
what was not measured says so and why.
"""

from __future__ import annotations

from typing import Any

from scbp_edge.records import Card, Constraints, RankingPoint, Report


def _num(x: float | None, unit: str, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f} {unit}" if abs(x) >= 1000 else f"{x:.{nd}g} {unit}"


def _vs(cand: float | None, seed: float | None, unit: str, nd: int = 3) -> str:
    """'0.32 MB vs 1.04 MB (-69 %)'."""
    if cand is None or seed is None:
        return f"{_num(cand, unit, nd)} (seed: {_num(seed, unit, nd)})"
    change = f" ({100 * (cand / seed - 1):+.0f} %)" if seed else ""
    return f"{_num(cand, unit, nd)} vs {_num(seed, unit, nd)}{change}"


def _accuracy_row(sel: RankingPoint, seed: RankingPoint, rep: Report) -> tuple[str, str]:
    kinds = rep.accuracy_kind
    if not kinds or any("stand-in" in k for k in kinds):
        return "Accuracy", "not measured: the build had no data (--data none); params retained stands in for it"
    if sel.test_accuracy is not None and seed.test_accuracy is not None:
        what = "test top-1 after fine-tuning" + (" and int8 quantization" if sel.precision == "int8" else "")
        delta = sel.test_accuracy - seed.test_accuracy
        text = (f"{sel.test_accuracy:.2f} % {what}{_interval(sel.test_images, sel.test_interval, 'test')} vs "
                f"{seed.test_accuracy:.2f} % for the seed fine-tuned alike")
        pair = sel.vs_seed
        if pair:
            lo, hi = pair["interval_pt"]
            text += f": {delta:+.2f} pt (paired on the same images, 95 % interval {lo:+.2f} to {hi:+.2f})"
            if not pair["distinguishable"]:
                text += "; not distinguishable from the seed at this test size"
            return "Accuracy", text
        return "Accuracy", text + f" ({delta:+.2f} pt)"
    if sel.proxy_accuracy is None or seed.proxy_accuracy is None:
        return "Accuracy", "n/a: no validation images"
    delta = sel.proxy_accuracy - seed.proxy_accuracy
    return "Accuracy", (f"{sel.proxy_accuracy:.2f} % proxy{_interval(sel.proxy_images, sel.proxy_interval, 'proxy')}"
                        f", not fine-tuned, vs {seed.proxy_accuracy:.2f} % for the seed ({delta:+.2f} pt)")


def _interval(n: int | None, iv: tuple[float, float] | None, kind: str) -> str:
    """' (450 test images, 95 % interval 95.7-98.6)'; empty where the count is unknown (older runs)."""
    if not n or not iv:
        return ""
    split = "test" if kind == "test" else "validation"
    return f" ({n:,} {split} images, 95 % interval {iv[0]:.1f}-{iv[1]:.1f})"


def _weights_row(sel: RankingPoint, rep: Report) -> str:
    """How the selected network's weights were made: channels, reconstruction, fine-tune teacher."""
    w = rep.weights
    rec = sel.reconstruction
    if not any(sel.ratios):
        text = "the seed's own"
    elif rec and rec.applied:
        text = (f"channels by {w.criterion}, then re-solved against the seed on {rec.images} "
                f"training images ({rec.layers} layers, output error {rec.error_before or 0:.3f} -> "
                f"{rec.error_after or 0:.3f})")
        if rec.kept_l1:
            text += f"; {len(rec.kept_l1)} layer(s) kept their inherited weights"
    else:
        text = f"channels by {w.criterion}, weights inherited ({(rec and rec.reason) or 'no record'})"
    teacher = (w.teacher or {}).get("chosen")
    if sel.test_accuracy is not None and teacher and any(sel.ratios):
        text += f"; fine-tuned, distilled from the {teacher}"
    return text


def _batch_rows(sel: RankingPoint, seed: RankingPoint) -> list[tuple[str, str]]:
    """One row per batch size above 1 the target times: images per second, against the seed at that batch."""
    theirs = {b.latency.batch: b.latency for b in seed.batched}
    rows = []
    for b in sel.batched:
        lat, n = b.latency, b.latency.batch
        vs = f"{b.speedup:.2f}x the seed's speed" if b.speedup else "no paired speed-up"
        if n in theirs:
            vs += f"; the seed: {theirs[n].throughput_ips:,.0f} images/s"
        rows.append((f"Batch {n}", f"{lat.throughput_ips:,.0f} images/s, p50 {_num(lat.p50_ms, 'ms')} per "
                     f"batch ({vs})"))
    return rows


def _energy_row(sel: RankingPoint, seed: RankingPoint, rep: Report) -> str:
    if sel.energy_mj is not None:
        return _vs(sel.energy_mj, seed.energy_mj, "mJ per inference")
    reasons = rep.energy_note or ("no power sensor",)
    return "not measured: " + reasons[0]


def summary_card(rep: Report | dict[str, Any], run_dir: str = "RUN_DIR") -> Card:
    """The card: a title, labelled rows, warnings in words, and the package command."""
    from scbp_edge.report import typed

    rep = typed(rep)
    pts = {p.id: p for p in rep.points}
    selection, seed = rep.selection, rep.seed_point
    warnings = tuple(_warnings(rep))
    if selection.id is None or selection.id not in pts or seed is None:
        return Card("No model selected", (("Why", selection.reason),), warnings, None)
    sel = pts[selection.id]
    speed = f"{sel.speedup:.2f}x faster (p50 {_num(sel.p50_ms, 'ms')} vs {_num(seed.p50_ms, 'ms')})"
    if sel.paired is not None and sel.paired.interval:
        lo, hi = sel.paired.interval
        speed += f"; {lo:.2f}x-{hi:.2f}x across the paired rounds"
    p90 = seed.p90_ms / sel.p90_ms if sel.p90_ms else None
    rows = (
        ("Speed-up, p50", speed),
        ("Speed-up, p90", f"{p90:.2f}x (p90 {_num(sel.p90_ms, 'ms')} vs {_num(seed.p90_ms, 'ms')})" if p90 else "n/a"),
        *_batch_rows(sel, seed),
        _accuracy_row(sel, seed, rep),
        ("Parameters", _vs(sel.params, seed.params, "", 6).replace("  ", " ")),
        ("Model file", _vs(sel.size_mb, seed.size_mb, "MB")),
        ("Memory", _vs(sel.memory_mb, seed.memory_mb, "MB")),
        ("Energy", _energy_row(sel, seed, rep)),
        ("Precision", sel.precision + (" (QDQ, calibrated on training images)" if sel.precision == "int8" else "")),
        ("Weights", _weights_row(sel, rep)),
        ("Chosen by", selection.reason),
    )
    command = f"scbp-edge package {run_dir} --candidate {sel.id} -o {sel.id}-image"
    return Card(f"Selected {sel.id} for {rep.target_name}", rows, warnings, command)


def _warnings(rep: Report) -> list[str]:
    out = []
    t = rep.training
    if t and t.interrupted:
        out.append(f"Training was interrupted ({t.trained} of {t.wanted} networks fine-tuned): the choice "
                   "below uses proxy accuracy where no test accuracy exists; resume the build to finish it.")
    noisy = [p.id for p in rep.points if p.noisy]
    if noisy:
        more = f" and {len(noisy) - 3} more" if len(noisy) > 3 else ""
        out.append(f"{len(noisy)} candidate(s) stayed disturbed after measuring again (fewer than 3 rounds without "
                   f"waiting or slowing: {', '.join(noisy[:3])}{more}): treat their latency and speed-up as "
                   "approximate, or measure again on an idle machine.")
    out += _undecided_warnings(rep)
    if rep.unreadable_rows:
        out.append(f"The run database is damaged: {rep.unreadable_rows} row(s) could not be read and are missing.")
    for note in rep.run.notes:
        out.append(note[0].upper() + note[1:] + ".")
    return out


def machine_note(points: list[RankingPoint]) -> str | None:
    """One line on what the machine did to the measurement, where it did anything."""
    total = sum(p.rounds_measured or 0 for p in points)
    gone = sum(p.rounds_set_aside or 0 for p in points)
    if not total or not gone:
        return None
    worst = max((p.slowest_round or 1.0 for p in points), default=1.0)
    return (f"The machine disturbed {gone} of {total} measurement rounds (up to {worst:.2f}x slower, or waiting for a "
            "core); they were measured again and set aside, so the figures come from undisturbed rounds.")


def _undecided_warnings(rep: Report) -> list[str]:
    """Where the accuracy limit hung on noise: say so, per candidate, with the test size that would decide it."""
    und = rep.selection.undecided or {}
    limit = (rep.run.config.constraints if rep.run.config else Constraints()).max_accuracy_drop
    out = []
    for cid, u in sorted(und.items(), key=lambda kv: kv[1].diff_pt)[:3]:
        lo, hi = u.interval_pt
        side = "kept as within" if u.meets else "excluded as beyond"
        need = (f"about {u.images_to_decide:,} test images would decide it" if u.images_to_decide
                else "its drop sits on the limit, so no test size decides it")
        out.append(f"{cid} was {side} the {limit:g}-pt accuracy limit on {u.n:,} test images, but its drop "
                   f"({u.diff_pt:+.2f} pt, 95 % interval {lo:+.2f} to {hi:+.2f}) cannot be told from the limit at "
                   f"this test size: {need}.")
    if len(und) > 3:
        out.append(f"... and {len(und) - 3} more candidate(s) undecided the same way (report.json, selection).")
    return out


def card_markdown(card: Card) -> list[str]:
    """The card as Markdown lines (report.md, GitHub job summary)."""
    out = [f"**{card.title}**", "", "| | |", "|---|---|"]
    out += [f"| {label} | {value} |" for label, value in card.rows]
    out += [""] + [f"> Warning: {w}" for w in card.warnings]
    if card.command:
        out += ["", f"Package it: `{card.command}`"]
    return out + [""]
