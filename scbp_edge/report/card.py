"""The report's first screen: which model, how much faster, how much worse, and how to ship it.

One JSON-serialisable card, rendered alike at the top of report.md, the HTML
report, the GitHub job summary and the terminal.  Every number has its unit;
what was not measured says so and why.
"""

from __future__ import annotations

from typing import Any


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


def _accuracy_row(sel: dict[str, Any], seed: dict[str, Any], rep: dict[str, Any]) -> tuple[str, str]:
    kinds = rep.get("accuracy_kind") or []
    if not kinds or any("stand-in" in k for k in kinds):
        return "Accuracy", "not measured: the build had no data (--data none); params retained stands in for it"
    if sel["test_accuracy"] is not None and seed["test_accuracy"] is not None:
        what = "test top-1 after fine-tuning" + (" and int8 quantization" if sel["precision"] == "int8" else "")
        delta = sel["test_accuracy"] - seed["test_accuracy"]
        return "Accuracy", (f"{sel['test_accuracy']:.2f} % {what} vs {seed['test_accuracy']:.2f} % for the seed "
                            f"fine-tuned alike ({delta:+.2f} pt)")
    if sel["proxy_accuracy"] is None or seed["proxy_accuracy"] is None:
        return "Accuracy", "n/a: no validation images"
    delta = sel["proxy_accuracy"] - seed["proxy_accuracy"]
    return "Accuracy", (f"{sel['proxy_accuracy']:.2f} % proxy (validation split, not fine-tuned) vs "
                        f"{seed['proxy_accuracy']:.2f} % for the seed ({delta:+.2f} pt)")


def _energy_row(sel: dict[str, Any], seed: dict[str, Any], rep: dict[str, Any]) -> str:
    if sel["energy_mj"] is not None:
        return _vs(sel["energy_mj"], seed["energy_mj"], "mJ per inference")
    reasons = rep.get("energy_note") or ["no power sensor"]
    return "not measured: " + reasons[0]


def summary_card(rep: dict[str, Any], run_dir: str = "RUN_DIR") -> dict[str, Any]:
    """The card as data: a title, labelled rows, warnings in words, and the package command."""
    pts = {p["id"]: p for p in rep["points"]}
    sel_id = rep["selection"]["id"]
    seed = rep.get("seed_point")
    target = (rep["run"].get("target") or {}).get("name", "the target")
    warnings = _warnings(rep)
    if sel_id is None or sel_id not in pts or seed is None:
        return {"title": "No model selected", "rows": [["Why", rep["selection"]["reason"]]], "warnings": warnings,
                "command": None}
    sel = pts[sel_id]
    speed = f"{sel['speedup']:.2f}x faster (p50 {_num(sel['p50_ms'], 'ms')} vs {_num(seed['p50_ms'], 'ms')})"
    if (sel.get("paired") or {}).get("interval"):
        lo, hi = sel["paired"]["interval"]
        speed += f"; {lo:.2f}x-{hi:.2f}x across the paired rounds"
    p90 = seed["p90_ms"] / sel["p90_ms"] if sel["p90_ms"] else None
    rows = [
        ["Speed-up, p50", speed],
        ["Speed-up, p90", f"{p90:.2f}x (p90 {_num(sel['p90_ms'], 'ms')} vs {_num(seed['p90_ms'], 'ms')})"
         if p90 else "n/a"],
        list(_accuracy_row(sel, seed, rep)),
        ["Parameters", _vs(sel["params"], seed["params"], "", 6).replace("  ", " ")],
        ["Model file", _vs(sel["size_mb"], seed["size_mb"], "MB")],
        ["Memory", _vs(sel["memory_mb"], seed["memory_mb"], "MB")],
        ["Energy", _energy_row(sel, seed, rep)],
        ["Precision", sel["precision"] + (" (QDQ, calibrated on training images)" if sel["precision"] == "int8"
                                          else "")],
        ["Chosen by", rep["selection"]["reason"]],
    ]
    command = f"scbp-edge package {run_dir} --candidate {sel_id} -o {sel_id}-image"
    return {"title": f"Selected {sel_id} for {target}", "rows": rows, "warnings": warnings, "command": command}


def _warnings(rep: dict[str, Any]) -> list[str]:
    out = []
    t = rep.get("training")
    if t and t.get("interrupted"):
        out.append(f"Training was interrupted ({t['trained']} of {t['wanted']} networks fine-tuned): the choice "
                   "below uses proxy accuracy where no test accuracy exists; resume the build to finish it.")
    noisy = [p["id"] for p in rep["points"] if p.get("noisy")]
    if noisy:
        out.append(f"{len(noisy)} candidate(s) were measured while the machine was busy (their rounds disagreed by "
                   "more than 10 %, or the inference thread waited for a core, even after re-measuring: "
                   f"{', '.join(noisy[:3])}): load slows large models more than small ones, so treat their latency "
                   "and speed-up as approximate, or measure again on an idle machine.")
    if rep.get("unreadable_rows"):
        out.append(f"The run database is damaged: {rep['unreadable_rows']} row(s) could not be read and are missing.")
    for note in rep["run"].get("notes") or []:
        out.append(note[0].upper() + note[1:] + ".")
    return out


def card_markdown(card: dict[str, Any]) -> list[str]:
    """The card as Markdown lines (report.md, GitHub job summary)."""
    out = [f"**{card['title']}**", "", "| | |", "|---|---|"]
    out += [f"| {label} | {value} |" for label, value in card["rows"]]
    out += [""] + [f"> Warning: {w}" for w in card["warnings"]]
    if card["command"]:
        out += ["", f"Package it: `{card['command']}`"]
    return out + [""]
