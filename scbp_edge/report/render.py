"""Markdown, GitHub job summary and self-contained HTML renderings of a report dict.

Each opens with the summary card (report/card.py).  The HTML inlines its
plots and a few lines of JavaScript that sort the tables: no network, no
external fonts or scripts.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from scbp_edge.rank import tie_groups
from scbp_edge.report.card import card_markdown, machine_note, summary_card

COLUMNS = ("rank", "candidate", "precision", "ratios", "proxy %", "test % (95 % interval)", "vs seed pt",
           "p50 ms", "p50 IQR ms", "speed-up",
           "p90 ms", "CV", "memory MB", "size MB", "params", "MACs", "energy mJ", "on front")


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def speed_ranks(points: list[dict[str, Any]]) -> list[str]:
    """Latency ranks of points sorted by p50; a point tied with its group's leader (rank.tie_groups) shares its
    rank, marked '=': the measurement cannot order them, so the report does not either."""
    ranks = [lead + 1 for lead in tie_groups(points)]
    counts = Counter(ranks)
    return [f"{r}=" if counts[r] > 1 else str(r) for r in ranks]


def _rows(rep: dict[str, Any]) -> list[list[str]]:
    front, sel = set(rep["front"]), rep["selection"]["id"]
    rows = []
    pts = sorted(rep["points"], key=lambda p: p["p50_ms"])
    for p, rank in zip(pts, speed_ranks(pts), strict=True):
        mark = ("selected, " if p["id"] == sel else "") + ("yes" if p["id"] in front else "")
        rounds = p.get("round_p50_ms") or []
        rng = [float(np.percentile(rounds, 25)), float(np.percentile(rounds, 75))] if len(rounds) >= 3 else None
        rows.append([rank, p["id"], p["precision"], ",".join(f"{r:g}" for r in p["ratios"]), _f(p["proxy_accuracy"], 4),
                     _test_cell(p), _vs_seed_cell(p), _f(p["p50_ms"]), f"{rng[0]:.3g}-{rng[1]:.3g}" if rng else "n/a",
                     _f(p["speedup"]), _f(p["p90_ms"]), _f(p["cv"], 2), _f(p["memory_mb"]), _f(p["size_mb"]),
                     _f(p["params"]), _f(p["macs"]), _f(p["energy_mj"]), mark.strip(", ")])
    return rows


def _test_cell(p: dict[str, Any]) -> str:
    iv = p.get("test_interval")
    return _f(p["test_accuracy"], 4) + (f" ({iv[0]:.1f}-{iv[1]:.1f})" if iv else "")


def _vs_seed_cell(p: dict[str, Any]) -> str:
    """The paired difference with the seed on the same test images, and '~' where it is within noise."""
    v = p.get("vs_seed")
    if not v:
        return "n/a"
    return f"{v['diff_pt']:+.2f}" + ("" if v["distinguishable"] else " ~")


def _details(rep: dict[str, Any]) -> list[str]:
    run, fl = rep["run"], rep["flops_vs_measured"]
    lines = [
        f"Seed: {run['seed']['name']} ({run['seed']['weights'] or 'untrained'}), "
        f"{len(run['segmentation']['segments'])} segments; target: {run['target']['name']} (runtime "
        f"{run['target']['backend']}; precisions searched: {', '.join(run.get('precisions') or [])}).",
        f"Candidates: {rep['counts']['measured']} measured, {rep['counts']['failed']} failed "
        f"(each network at each precision).",
        f"FLOPs vs measured: Kendall tau between MACs and p50 = {_f(fl['kendall_tau'])}; "
        f"{len(fl['misordered_pairs'])} of {fl['pairs']} pairs are mis-ordered by MACs beyond a "
        f"{fl['noise_band']:.0%} noise band.",
    ]
    if rep.get("budget_result"):
        b = rep["budget_result"]
        lines.append(f"Latency budget: {b['inside']} candidate(s) met it; the best, {b['best']}, is "
                     f"{_f(b['best_speedup'])}x the seed's speed at {_f(b['best_accuracy'], 4)} % "
                     f"({b['accuracy_kind']} accuracy) vs the seed's {_f(b['seed_accuracy'], 4)} %.")
    if rep.get("budget"):
        b = rep["budget"]
        lines.append(f"Measurement budget: {b['measured']} of {b['measured'] + b['not_measured']} candidates "
                     f"measured (budget {b['budget']}), chosen near the front a per-segment latency model predicted.")
    if rep.get("classifier_replaced"):
        c = rep["classifier_replaced"]
        lines.append(f"Classifier replaced: seed had {c['from_classes']} classes, data {c['to_classes']}; new head "
                     f"trained {c['epochs']} epoch(s), seed test accuracy {c['test_accuracy']:.2f} %.")
    d = rep.get("data")
    if d:
        left = (f"; {len(d['skipped'])} unreadable image(s) left out: {', '.join(d['skipped'][:3])}"
                + (f" and {len(d['skipped']) - 3} more" if len(d["skipped"]) > 3 else "")) if d["skipped"] else ""
        lines.append(f"Data: {d['train']:,} training, {d['val']:,} validation and {d['test']:,} test images{left}.")
    lines += _weights_details(rep.get("weights") or {})
    note = machine_note(rep["points"])
    if note:
        lines.append(note)
    if rep.get("stage_seconds"):
        lines.append("Time spent: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep["stage_seconds"].items()) + ".")
    if rep.get("energy_sources"):
        lines.append("Energy: mJ per inference from " + "; ".join(rep["energy_sources"]) + ".")
    if rep.get("measured_with"):
        lines.append("Measured with: " + ", ".join(f"{k} {'/'.join('unknown' if x is None else str(x) for x in v)}"
                                                   for k, v in rep["measured_with"].items()) + ".")
    n = next((p["test_images"] for p in rep["points"] if p.get("test_images")), None)
    if n:
        lines.append(f"Test accuracy: on {n:,} test images, with 95 % (Wilson) intervals; 'vs seed' is the paired "
                     "difference on the same images, '~' where it is within noise (exact McNemar test, p >= 0.05).")
    lines += [x for x in (_fine_tune_line(rep), _reference_line(rep)) if x]
    tr = rep.get("trained") or {}
    if tr.get("proxy_spearman") is not None:
        lines.append(f"Proxy vs fine-tuned accuracy: Spearman {tr['proxy_spearman']:.2f} over the "
                     f"{len(tr['rows'])} fine-tuned candidates.")
    return lines


def _fine_tune_line(rep: dict[str, Any]) -> str | None:
    """What each fine-tuned network got: epochs, steps and seconds (a time budget decides them while training)."""
    got: dict[str, dict[str, Any]] = {}
    for c in rep.get("candidates") or []:
        t = c.get("trained") or {}
        if t.get("steps") is not None:
            got.setdefault(c["network"], t)
    if not got:
        return None
    minutes = ((rep.get("run") or {}).get("config") or {}).get("train_minutes")
    how = (f"within --train-minutes {minutes:g}, shared by each network's measured step time"
           if minutes else "for --epochs")
    return f"Fine-tune ({how}): " + "; ".join(
        f"{n} {t.get('epochs', 0):g} epoch(s), {t['steps']} steps, {t.get('train_seconds') or 0:.0f} s"
        for n, t in got.items()) + "."


def _reference_line(rep: dict[str, Any]) -> str | None:
    """Which seed the pruned networks are compared with: as it came or fine-tuned, whichever won on validation."""
    v = next(((c.get("trained") or {}).get("validation") for c in rep.get("candidates") or []
              if (c.get("trained") or {}).get("validation")), None)
    if not v:
        return None
    why = ("its fine-tune scored lower, so it ships as it came" if v["kept"] == "as it came"
           else "its fine-tune is what ships")
    return (f"Seed reference: the seed {v['kept']} (validation top-1: as it came {v['as it came']:.2f} %, "
            f"fine-tuned {v['fine-tuned']:.2f} %, {v['images']:,} images); {why}.")


def _weights_details(w: dict[str, Any]) -> list[str]:
    """How the weights were made: channel criterion, reconstruction and where it could not help, the teacher."""
    if not w:
        return []
    if w["reconstructed"]:
        text = (f"Weights: channels by {w['criterion']}; {w['reconstructed']} pruned network(s) re-solved against "
                f"the seed on {w['images']} training images (median {w['median_seconds']:.2f} s each).")
        if w["kept_l1"]:
            named = "; ".join(f"{k} ({v})" for k, v in sorted(w["kept_l1"].items())[:5])
            more = f" and {len(w['kept_l1']) - 5} more" if len(w["kept_l1"]) > 5 else ""
            text += f" Layers that kept their inherited weights: {named}{more}."
        if w["strong_ridge"]:
            text += (f" {len(w['strong_ridge'])} layer(s) had fewer calibration samples than unknowns and were "
                     "solved with a stronger ridge (more --calib-images fits them better).")
    else:
        text = (f"Weights: channels by {w['criterion']}; inherited, not reconstructed "
                f"({'; '.join(w['skipped']) or 'nothing was pruned'}).")
    lines = [text]
    t = w.get("teacher")
    if t and t.get("validation_accuracy"):
        v = t["validation_accuracy"]
        lines.append(f"Fine-tune teacher: the {t['chosen']} (validation top-1: seed as it came {v['seed']:.2f} %, "
                     f"fine-tuned {v['fine-tuned seed']:.2f} %, {t['val_images']} images).")
    return lines


def render_markdown(rep: dict[str, Any], plots: list[Path], run_dir: str = "RUN_DIR") -> str:
    """GitHub-flavoured Markdown: card, details, the table, failures, plots."""
    out = ["# scbp-edge build report", "", *card_markdown(summary_card(rep, run_dir))]
    out += [f"- {x}" for x in _details(rep)] + ["", "## Measured candidates (fastest first)", ""]
    out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(rep)]
    if rep["failed"]:
        out += ["", "## Failed candidates", ""] + [f"- {f['id']}: {f['stage']}: {f['error']}" for f in rep["failed"]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    return "\n".join(out) + "\n"


def render_github(rep: dict[str, Any], run_dir: str = "RUN_DIR") -> str:
    """Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): the card and the front, no local image links."""
    front = set(rep["front"])
    out = ["## scbp-edge benchmark report", "", *card_markdown(summary_card(rep, run_dir))]
    out += [f"- {x}" for x in _details(rep)] + ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    at = COLUMNS.index("candidate")
    out += ["| " + " | ".join(r) + " |" for r in _rows(rep) if r[at] in front]
    return "\n".join(out) + "\n"


SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    var key = function (tr) { var t = tr.cells[col].textContent.replace(/,/g, ''); var n = parseFloat(t);
      return isNaN(n) ? t : n; };
    Array.from(body.rows).sort(function (a, b) { var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(function (tr) { body.appendChild(tr); });
  });
});
"""
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1250px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#eee;cursor:pointer;white-space:nowrap}table.sortable td{text-align:right}
table.sortable td:first-child{text-align:left;white-space:nowrap}tr.front td{background:#fff4e6}
tr.sel td{background:#e6ffe6;font-weight:bold}img{max-width:100%}figure{display:inline-block;margin:1em;
vertical-align:top}#card{border:2px solid #080;border-radius:6px;padding:0.6em 1.2em;background:#f6fff6}
#card td:first-child{font-weight:bold;white-space:nowrap}.warn{background:#fff3cd;padding:0.4em;margin:0.3em 0}
code{background:#eee;padding:2px 4px}
"""


def render_html(rep: dict[str, Any], plots: list[Path], run_dir: str = "RUN_DIR") -> str:
    """One self-contained HTML file (plots inlined as base64 PNG, sorting by inline script)."""
    e = html.escape
    card = summary_card(rep, run_dir)
    card_html = (f'<div id="card"><h2>{e(card["title"])}</h2><table>'
                 + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in card["rows"]) + "</table>"
                 + "".join(f'<div class="warn">{e(w)}</div>' for w in card["warnings"])
                 + (f'<p>Package it: <code>{e(card["command"])}</code></p>' if card["command"] else "") + "</div>")
    front, sel = set(rep["front"]), rep["selection"]["id"]
    at = COLUMNS.index("candidate")  # not the first column: that is the rank
    body = ""
    for r in _rows(rep):
        cls = ' class="sel"' if r[at] == sel else (' class="front"' if r[at] in front else "")
        body += f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
    table = ('<table class="sortable" id="candidates"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in COLUMNS)
             + f"</tr></thead><tbody>{body}</tbody></table>")
    failed = ""
    if rep["failed"]:
        failed = ('<h2>Failed candidates</h2><table class="sortable" id="failed"><thead><tr><th>candidate</th>'
                  "<th>stage</th><th>error</th></tr></thead><tbody>"
                  + "".join(f"<tr><td>{e(f['id'])}</td><td>{e(str(f['stage']))}</td><td>{e(str(f['error']))}</td></tr>"
                            for f in rep["failed"]) + "</tbody></table>")
    imgs = "".join(
        f'<figure><img class="plot" alt="{e(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{e(p.stem)}</figcaption></figure>' for p in plots)
    details = "".join(f"<li>{e(x)}</li>" for x in _details(rep))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>scbp-edge report</title><style>{STYLE}</style>'
            f"</head><body><h1>scbp-edge build report</h1>{card_html}<ul>{details}</ul><h2>Plots</h2>{imgs}"
            "<h2>Measured candidates</h2><p>Click a column to sort. Green: selected; orange: on the measured front "
            f"(proxy accuracy, p50, memory, size, energy).</p>{table}{failed}<script>{SORT_JS}</script>"
            "</body></html>\n")
