"""Markdown, GitHub job summary and self-contained HTML layouts of a report's sections.

What a report says is built by its sections (report/sections/), once per
format; this module only lays their blocks out. The HTML inlines its plots and
a few lines of JavaScript that sort the tables: no network, no external fonts
or scripts.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from scbp_edge.report.card import card_markdown
from scbp_edge.report.sections import Context, Section, Table, sections


def render_markdown(rep: dict[str, Any], plots: list[Path], run_dir: str = "RUN_DIR") -> str:
    """GitHub-flavoured Markdown: card, details, the table, failures, plots."""
    return _markdown("# scbp-edge build report", Context(rep, "markdown", tuple(plots), run_dir))


def render_github(rep: dict[str, Any], run_dir: str = "RUN_DIR") -> str:
    """Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): the card and the front, no local image links."""
    return _markdown("## scbp-edge benchmark report", Context(rep, "github", (), run_dir))


def _blank(out: list[str]) -> None:
    """A blank line before a heading or a table (Markdown needs one), never two."""
    if out and out[-1] != "":
        out.append("")


def _markdown(heading: str, ctx: Context) -> str:
    out = [heading, ""]
    for s in sections(ctx):
        if s.title:
            _blank(out)
            out += [f"## {s.title}", ""]
        if s.card:
            out += card_markdown(s.card)
        if s.intro:
            out += [s.intro, ""]
        out += [f"- {b}" for b in s.bullets]
        if s.table:
            _blank(out)
            out += ["| " + " | ".join(s.table.columns) + " |", "|" + "---|" * len(s.table.columns)]
            out += ["| " + " | ".join(r) + " |" for r in s.table.rows]
        out += [f"![{p.stem}](plots/{p.name})" for p in s.images]
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
    body = "".join(_html_section(s) for s in sections(Context(rep, "html", tuple(plots), run_dir)))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>scbp-edge report</title><style>{STYLE}</style>'
            f"</head><body><h1>scbp-edge build report</h1>{body}<script>{SORT_JS}</script></body></html>\n")


def _html_section(s: Section) -> str:
    e = html.escape
    out = f"<h2>{e(s.title)}</h2>" if s.title else ""
    if s.card:
        c = s.card
        out += (f'<div id="card"><h2>{e(c.title)}</h2><table>'
                + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in c.rows) + "</table>"
                + "".join(f'<div class="warn">{e(w)}</div>' for w in c.warnings)
                + (f"<p>Package it: <code>{e(c.command)}</code></p>" if c.command else "") + "</div>")
    if s.intro:
        out += f"<p>{e(s.intro)}</p>"
    if s.bullets:
        out += "<ul>" + "".join(f"<li>{e(b)}</li>" for b in s.bullets) + "</ul>"
    if s.table:
        out += _html_table(s.table)
    out += "".join(
        f'<figure><img class="plot" alt="{e(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{e(p.stem)}</figcaption></figure>'
        for p in s.images)
    return out


def _html_table(t: Table) -> str:
    e = html.escape
    classes = t.row_classes or ("",) * len(t.rows)
    body = "".join((f'<tr class="{c}">' if c else "<tr>") + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>"
                   for r, c in zip(t.rows, classes, strict=True))
    ident = f' id="{e(t.element_id)}"' if t.element_id else ""
    return (f'<table class="sortable"{ident}><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in t.columns)
            + f"</tr></thead><tbody>{body}</tbody></table>")
