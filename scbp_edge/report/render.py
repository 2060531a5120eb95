"""Markdown and self-contained HTML renderings of a report dict."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _rows(rep: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["id", "precision", "ratios", "proxy acc", "test acc", "p50 ms", "speed-up", "p90 ms", "CV", "memory MB",
            "size MB", "params", "MACs", "energy mJ", "front"]
    front = set(rep["front"])
    rows = []
    for p in sorted(rep["points"], key=lambda p: p["p50_ms"]):
        mark = ("selected " if p["id"] == rep["selection"]["id"] else "") + ("front" if p["id"] in front else "")
        rows.append([p["id"], p["precision"], ",".join(f"{r:g}" for r in p["ratios"]), _f(p["proxy_accuracy"], 4),
                     _f(p["test_accuracy"], 4), _f(p["p50_ms"]), _f(p["speedup"]), _f(p["p90_ms"]), _f(p["cv"], 2),
                     _f(p["memory_mb"]), _f(p["size_mb"]), _f(p["params"]), _f(p["macs"]), _f(p["energy_mj"]),
                     mark.strip()])
    return head, rows


def _summary_lines(rep: dict[str, Any]) -> list[str]:
    run, sel, fl = rep["run"], rep["selection"], rep["flops_vs_measured"]
    seed = rep["seed_point"]
    lines = [
        f"Seed: {run['seed']['name']} ({run['seed']['weights'] or 'untrained'}), "
        f"{len(run['segmentation']['segments'])} segments; target: {run['target']['name']} "
        f"({run['target']['backend']}, {','.join(run['target']['precisions'])}).",
        f"Candidates: {rep['counts']}.",
        f"Accuracy column: {', '.join(rep['accuracy_kind']) or 'n/a'}.",
        f"Selected: **{sel['id']}** - {sel['reason']}." if sel["id"] else f"Selected: none - {sel['reason']}.",
    ]
    sp = next((p for p in rep["points"] if p["id"] == sel["id"]), None)
    if sp and seed:
        # After one-shot training compare test accuracies (both fine-tuned alike), else the proxies.
        key, what = ("test_accuracy", "test accuracy after equal fine-tuning") if (
            sp.get("test_accuracy") is not None and seed.get("test_accuracy") is not None) else (
            "proxy_accuracy", "proxy accuracy")
        lines.append(
            f"Selected vs seed: {_f(sp['speedup'])}x faster (p50), "
            f"{100 * (1 - sp['params'] / seed['params']):.1f}% fewer params, "
            f"{100 * (1 - sp['size_mb'] / seed['size_mb']):.1f}% smaller file, {what} {_f(sp[key], 4)} "
            f"vs {_f(seed[key], 4)}."
        )
    tau = fl["kendall_tau"]
    lines.append(
        f"FLOPs vs measured: Kendall tau between MACs and p50 = {_f(tau)}; "
        f"{len(fl['misordered_pairs'])} of {fl['pairs']} pairs are mis-ordered by MACs beyond a "
        f"{fl['noise_band']:.0%} noise band ({', '.join(fl['misordered_candidates'][:8]) or 'none'})."
    )
    if rep.get("budget"):
        b = rep["budget"]
        lines.append(f"Measurement budget: {b['measured']} of {b['measured'] + b['not_measured']} candidates measured "
                     f"(budget {b['budget']}), chosen near the front predicted by a per-segment latency model.")
    if rep.get("classifier_replaced"):
        c = rep["classifier_replaced"]
        lines.append(f"Classifier replaced: seed had {c['from_classes']} classes, data {c['to_classes']}; new head "
                     f"trained {c['epochs']} epoch(s), seed test accuracy {c['test_accuracy']:.2f}%.")
    if rep.get("energy_sources"):
        lines.append("Energy: mJ per inference from " + "; ".join(rep["energy_sources"]) + " (above-idle energy "
                     "and idle power per candidate are in report.json).")
    if rep["energy_note"]:
        lines.append("Energy: not measured - " + "; ".join(rep["energy_note"]) + ".")
    if rep.get("measured_with"):
        lines.append("Measured with: " + ", ".join(f"{k} {'/'.join('unknown' if x is None else str(x) for x in v)}"
                                                   for k, v in rep["measured_with"].items()) + ".")
    return lines


def render_markdown(rep: dict[str, Any], plots: list[Path]) -> str:
    """GitHub-flavoured Markdown (also used for CI job summaries)."""
    head, rows = _rows(rep)
    out = ["# scbp-edge build report", ""] + [f"- {x}" for x in _summary_lines(rep)] + [""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    tr = rep.get("trained") or {}
    if tr.get("rows"):
        out += ["", "## One-shot trained candidates (test split)", "",
                f"Seed fine-tuned with the same budget: {_f(tr['seed_test_accuracy'], 4)}%. "
                f"Spearman(proxy, trained accuracy) = {_f(tr['proxy_spearman'])}.", "",
                "| id | proxy acc | test acc | delta vs seed | p50 ms | speed-up | params vs seed |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['id']} | {_f(r['proxy_accuracy'], 4)} | {_f(r['test_accuracy'], 4)} | "
                f"{_f(r['accuracy_delta_vs_seed'], 2)} | {_f(r['p50_ms'])} | {_f(r['speedup_vs_seed'])}x | "
                f"{_f(r['params_vs_seed'])} |" for r in tr["rows"]]
    if rep["failed"]:
        out += ["", "## Failed candidates", ""] + [f"- {f['id']}: {f['stage']}: {f['error']}" for f in rep["failed"]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    return "\n".join(out) + "\n"


def render_html(rep: dict[str, Any], plots: list[Path]) -> str:
    """One self-contained HTML file (plots inlined as base64 PNG)."""
    head, rows = _rows(rep)
    e = html.escape
    summary = "".join(f"<li>{e(x).replace('**', '')}</li>" for x in _summary_lines(rep))
    table = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
    for r in rows:
        cls = ' class="sel"' if "selected" in r[-1] else (' class="front"' if r[-1] else "")
        table += f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
    imgs = "".join(
        f'<figure><img alt="{e(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{e(p.stem)}</figcaption></figure>" for p in plots
    )
    failed = "".join(
        f"<li>{e(f['id'])}: {e(str(f['stage']))}: {e(str(f['error']))}</li>" for f in rep["failed"]
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>scbp-edge report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#eee}}tr.front td{{background:#fff4e6}}
tr.sel td{{background:#e6ffe6;font-weight:bold}}img{{max-width:100%}}figure{{display:inline-block;margin:1em}}
</style></head><body><h1>scbp-edge build report</h1><ul>{summary}</ul>
<h2>Measured Pareto front</h2>{imgs}<h2>Measured candidates (front highlighted)</h2>
<table>{table}</table>{'<h2>Failed</h2><ul>' + failed + '</ul>' if failed else ''}</body></html>
"""


def render_github(rep: dict[str, Any]) -> str:
    """Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): no local image links."""
    head, rows = _rows(rep)
    out = ["## scbp-edge benchmark report", ""] + [f"- {x}" for x in _summary_lines(rep)] + [""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"
