"""Matplotlib plots: latency vs accuracy and vs params (front highlighted), ratio heat map of the front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scbp_edge.rank import pareto_front


def write_plots(run_dir: Path, rep: dict[str, Any]) -> list[Path]:
    """PNG files in ``run_dir/plots``; none when nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [dict(p, accuracy=p["proxy_accuracy"]) for p in rep["points"] if p["proxy_accuracy"] is not None]
    if not pts:
        return []
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    front = set(rep["front"])
    sel = rep["selection"]["id"]
    acc_label = "accuracy (%)" + (" - " + rep["accuracy_kind"][0] if rep["accuracy_kind"] else "")
    lat_label = f"measured p50 latency (ms) on {rep['run']['target']['name']}"
    views = [("p50_ms", lat_label, "accuracy", acc_label, "latency_vs_accuracy.png"),
             ("p50_ms", lat_label, "params", "parameters", "latency_vs_params.png")]
    if all(p.get("energy_mj") is not None for p in pts):  # battery-powered robots care as much as latency
        views.append(("energy_mj", "measured energy per inference (mJ)", "accuracy", acc_label,
                      "energy_vs_accuracy.png"))
    paths = [_scatter(plt, out, pts, front, sel, *view) for view in views]
    if front:
        paths.append(_heatmap(plt, out, [p for p in pts if p["id"] in front]))
    return paths


def _scatter(plt, out: Path, pts: list[dict[str, Any]], front: set[str], sel: str | None, xkey: str, xlabel: str,
             ykey: str, ylabel: str, name: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # The run's front is over accuracy, latency, memory, size (and energy where measured);
    # the line is this plot's own 2-D front, hollow markers are the other front members.
    direction = "max" if ykey == "accuracy" else "min"
    front2 = set(pareto_front(pts, ((ykey, direction), (xkey, "min"))))
    other = [p for p in pts if p["id"] not in front]
    on = sorted((p for p in pts if p["id"] in front2), key=lambda p: p[xkey])
    rest = [p for p in pts if p["id"] in front and p["id"] not in front2]
    ax.scatter([p[xkey] for p in other], [p[ykey] for p in other], c="#9aa", s=22, label="candidates")
    ax.scatter([p[xkey] for p in rest], [p[ykey] for p in rest], facecolors="none", edgecolors="#d62",
               s=40, label="on the full front (memory/size/energy)")
    ax.plot([p[xkey] for p in on], [p[ykey] for p in on], "o-", c="#d62", ms=6,
            label=f"Pareto front ({ylabel.split(' ')[0]} vs {xlabel.split(' ')[1]})")
    for p in pts:
        if p["reference"] == "seed":
            ax.scatter([p[xkey]], [p[ykey]], marker="*", s=180, c="#225", label="seed", zorder=5)
        if p["id"] == sel:
            ax.scatter([p[xkey]], [p[ykey]], marker="s", s=110, facecolors="none", edgecolors="#080",
                       linewidths=2, label="selected", zorder=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel[:60])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return out / name


def _heatmap(plt, out: Path, front: list[dict[str, Any]]) -> Path:
    front = sorted(front, key=lambda p: p["p50_ms"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(front[0]["ratios"]), 1.0 + 0.32 * len(front)))
    data = [p["ratios"] for p in front]
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(front)), [f"{p['id']} ({p['p50_ms']:.2f} ms)" for p in front], fontsize=7)
    ax.set_xticks(range(len(data[0])), [f"seg {i}" for i in range(len(data[0]))])
    for i, row in enumerate(data):
        for j, r in enumerate(row):
            ax.text(j, i, f"{r:g}", ha="center", va="center", color="w" if r < 0.5 else "k", fontsize=7)
    fig.colorbar(im, ax=ax, label="c-ratio (fraction removed)")
    ax.set_title("Pareto front: per-segment c-ratios (fastest first)", fontsize=9)
    fig.tight_layout()
    path = out / "front_ratios_heatmap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
