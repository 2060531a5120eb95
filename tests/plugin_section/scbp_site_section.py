"""A third-party report section, as the README describes: one function plus one entry point (tests install it)."""

from __future__ import annotations

from scbp_edge.report.sections import Context, Section, Table


def build(ctx: Context) -> Section | None:
    if ctx.fmt == "github":  # nothing for a job summary
        return None
    pts = sorted(ctx.rep.points, key=lambda p: p.p50_ms)[:2]
    return Section("site", "Site notes", bullets=(f"{len(ctx.rep.points)} measured points",),
                   table=Table(("candidate", "p50 ms"), tuple((p.id, f"{p.p50_ms:.3f}") for p in pts)))


def broken(ctx: Context) -> Section | None:
    """A section with a bug: the report must still be written, naming it."""
    return Section("broken", bullets=(str(1 / 0),))
