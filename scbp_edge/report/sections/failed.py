"""Candidates that failed, each with the stage it failed in and the error (the run went on without them)."""

from __future__ import annotations

from scbp_edge.report.sections import Context, Section, Table


def build(ctx: Context) -> Section | None:
    failed = ctx.rep.failed
    if not failed or ctx.fmt == "github":  # the job summary shows the front only
        return None
    if ctx.fmt == "html":
        rows = tuple((f.id, str(f.stage), str(f.error)) for f in failed)
        return Section("failed", "Failed candidates", table=Table(("candidate", "stage", "error"), rows,
                                                                    element_id="failed"))
    return Section("failed", "Failed candidates", bullets=tuple(f"{f.id}: {f.stage}: {f.error}"
                                                                for f in failed))
