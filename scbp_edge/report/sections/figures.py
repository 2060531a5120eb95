"""The plots: latency against accuracy and parameters, and the front's ratios as a heatmap."""

from __future__ import annotations

from scbp_edge.report.sections import Context, Section


def build(ctx: Context) -> Section | None:
    if ctx.fmt == "github" or (not ctx.plots and ctx.fmt != "html"):  # no local image links in a job summary
        return None
    return Section("plots", "Plots", images=ctx.plots)
