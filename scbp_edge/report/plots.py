"""Matplotlib plots of a report: latency vs accuracy (and vs params, energy), and the front's ratios.

Each point uses the best accuracy its candidate has - test accuracy after
fine-tuning where it was trained (an arrow starts at its proxy, so the proxy's
error shows), else the proxy - and its marker says the precision.  Figures
lay themselves out to fit (constrained layout, legend below the axes); the
ratio heat map shows at most HEATMAP_ROWS front members, fastest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scbp_edge.rank import pareto_front
from scbp_edge.records import RankingPoint, Report, config_text

HEATMAP_ROWS = 30
MARKERS = {"fp32": "o", "fp16": "^", "int8": "s"}


def figures(rep: Report | dict[str, Any]) -> dict[str, Any]:
    """name -> matplotlib Figure (Agg); empty when nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scbp_edge.report import typed

    rep = typed(rep)
    pts = [p for p in rep.points if p.accuracy is not None]
    if not pts:
        return {}
    sel = rep.selection.id
    lat = f"measured p50 latency (ms) on {rep.target_name}"
    figs = {"latency_vs_accuracy": _scatter(plt, pts, sel, "p50_ms", lat, "accuracy"),
            "latency_vs_params": _scatter(plt, pts, sel, "p50_ms", lat, "params")}
    if all(p.energy_mj is not None for p in pts):  # battery-powered robots care as much as latency
        figs["energy_vs_accuracy"] = _scatter(plt, pts, sel, "energy_mj", "measured energy per inference (mJ)",
                                              "accuracy")
    front = [p for p in rep.points if p.id in set(rep.front)]
    if front:
        figs["front_ratios_heatmap"] = _heatmap(plt, front)
    return figs


def write_plots(run_dir: Path, rep: Report | dict[str, Any]) -> list[Path]:
    """PNG files in ``run_dir/plots``; none when nothing was measured."""
    import matplotlib.pyplot as plt

    figs = figures(rep)
    if not figs:
        return []
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    paths = []
    for name, fig in figs.items():
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        paths.append(out / f"{name}.png")
    return paths


def _scatter(plt, pts: list[RankingPoint], sel: str | None, xkey: str, xlabel: str, ykey: str):
    fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
    trained = any(p.accuracy_kind == "test" for p in pts)
    ylabel = {"accuracy": "top-1 accuracy (%)" + (": test if fine-tuned, else proxy" if trained else ": proxy"),
              "params": "parameters"}[ykey]
    front2 = set(pareto_front(pts, ((ykey, "max" if ykey == "accuracy" else "min"), (xkey, "min"))))
    for prec, marker in MARKERS.items():
        group = [p for p in pts if p.precision == prec]
        if not group:
            continue
        proxy = [p for p in group if p.accuracy_kind != "test" or ykey != "accuracy"]
        test = [p for p in group if p.accuracy_kind == "test" and ykey == "accuracy"]
        ax.scatter(*_xy(proxy, xkey, ykey), marker=marker, s=24, c="#9aa",
                   label=f"{prec}" + (" (proxy)" if ykey == "accuracy" else ""))
        if test:
            ax.scatter(*_xy(test, xkey, ykey), marker=marker, s=46, c="#1f6fb4", label=f"{prec}, fine-tuned (test)")
            for p in test:
                if p.proxy_accuracy is not None:
                    ax.annotate("", (getattr(p, xkey), p.accuracy), (getattr(p, xkey), p.proxy_accuracy),
                                arrowprops={"arrowstyle": "->", "color": "#1f6fb4", "alpha": 0.5, "lw": 0.8})
    on = sorted((p for p in pts if p.id in front2), key=lambda p: getattr(p, xkey))
    ax.plot(*_xy(on, xkey, ykey), "-", c="#d62", lw=1.2, label="front of this view")
    for p in pts:
        if p.is_seed:
            ax.scatter([getattr(p, xkey)], [getattr(p, ykey)], marker="*", s=200, c="#225", label="seed", zorder=5)
        if p.id == sel:
            ax.scatter([getattr(p, xkey)], [getattr(p, ykey)], marker="s", s=140, facecolors="none", edgecolors="#080",
                       linewidths=2, label="selected", zorder=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return fig


def _xy(pts: list[RankingPoint], xkey: str, ykey: str) -> tuple[list[float], list[float]]:
    """The points' two plotted fields (``xkey``, ``ykey``) as x and y lists."""
    return [getattr(p, xkey) for p in pts], [getattr(p, ykey) for p in pts]


def _heatmap(plt, front: list[RankingPoint]):
    rows = sorted(front, key=lambda p: p.p50_ms)[:HEATMAP_ROWS]
    nseg = len(rows[0].ratios)
    fig, ax = plt.subplots(figsize=(4.5 + 0.55 * nseg, 1.6 + 0.28 * len(rows)), layout="constrained")
    im = ax.imshow([p.ratios for p in rows], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(rows)), [f"{p.id}  {p.p50_ms:.3g} ms" for p in rows], fontsize=7)
    ax.set_xticks(range(nseg), [f"s{i}" for i in range(nseg)], fontsize=8)
    for i, p in enumerate(rows):
        for j, (r, text) in enumerate(zip(p.ratios, config_text(p.ratios, p.scopes).split(","))):
            ax.text(j, i, text, ha="center", va="center", color="w" if r < 0.5 else "k", fontsize=7)
    fig.colorbar(im, ax=ax, label="fraction removed", shrink=0.8)
    more = f" ({len(front) - len(rows)} slower not shown)" if len(front) > len(rows) else ""
    ax.set_title(f"Front: ratio per segment{more}", fontsize=9)
    return fig
