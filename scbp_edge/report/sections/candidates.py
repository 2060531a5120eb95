"""The measured candidates, fastest first: rank (ties shared), accuracy with intervals, latency, costs."""

from __future__ import annotations

from collections import Counter

import numpy as np

from scbp_edge.rank import tie_groups
from scbp_edge.records import RankingPoint, Report, config_text
from scbp_edge.report.sections import Context, Section, Table, number

COLUMNS = ("rank", "candidate", "precision", "ratios", "proxy %", "test % (95 % interval)", "vs seed pt",
           "p50 ms", "p50 IQR ms", "speed-up",
           "p90 ms", "CV", "memory MB", "size MB", "params", "MACs", "energy mJ", "on front")
INTRO = ("Click a column to sort. Green: selected; orange: on the measured front (proxy accuracy, p50, memory, size, "
         "energy).")


def speed_ranks(points: list[RankingPoint]) -> list[str]:
    """Latency ranks of points sorted by p50; a point tied with its group's leader (rank.tie_groups) shares its
    rank, marked '=': the measurement cannot order them, so the report does not either."""
    ranks = [lead + 1 for lead in tie_groups(points)]
    counts = Counter(ranks)
    return [f"{r}=" if counts[r] > 1 else str(r) for r in ranks]


def rows(rep: Report) -> list[list[str]]:
    """One row of text cells per measured candidate, fastest first."""
    front, sel = set(rep.front), rep.selection.id
    out = []
    pts = sorted(rep.points, key=lambda p: p.p50_ms)
    for p, rank in zip(pts, speed_ranks(pts), strict=True):
        mark = ("selected, " if p.id == sel else "") + ("yes" if p.id in front else "")
        rounds = p.round_p50_ms
        rng = [float(np.percentile(rounds, 25)), float(np.percentile(rounds, 75))] if len(rounds) >= 3 else None
        out.append([rank, p.id, p.precision, config_text(p.ratios, p.scopes),
                    number(p.proxy_accuracy, 4), _test_cell(p), _vs_seed_cell(p), number(p.p50_ms),
                    f"{rng[0]:.3g}-{rng[1]:.3g}" if rng else "n/a", number(p.speedup), number(p.p90_ms),
                    number(p.cv, 2), number(p.memory_mb), number(p.size_mb), number(p.params),
                    number(p.macs), number(p.energy_mj), mark.strip(", ")])
    return out


def _test_cell(p: RankingPoint) -> str:
    iv = p.test_interval
    return number(p.test_accuracy, 4) + (f" ({iv[0]:.1f}-{iv[1]:.1f})" if iv else "")


def _vs_seed_cell(p: RankingPoint) -> str:
    """The paired difference with the seed on the same test images, and '~' where it is within noise."""
    v = p.vs_seed
    if not v:
        return "n/a"
    return f"{v['diff_pt']:+.2f}" + ("" if v["distinguishable"] else " ~")


def build(ctx: Context) -> Section:
    front, sel = set(ctx.rep.front), ctx.rep.selection.id
    at = COLUMNS.index("candidate")  # not the first column: that is the rank
    table = [r for r in rows(ctx.rep) if ctx.fmt != "github" or r[at] in front]  # a job summary: the front only
    classes = tuple("sel" if r[at] == sel else "front" if r[at] in front else "" for r in table)
    titles = {"markdown": "Measured candidates (fastest first)", "github": None, "html": "Measured candidates"}
    return Section("candidates", titles[ctx.fmt], intro=INTRO if ctx.fmt == "html" else None,
                   table=Table(COLUMNS, tuple(map(tuple, table)), classes, "candidates"))
