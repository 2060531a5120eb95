"""The summary card: what was selected, how much faster and smaller, how accurate, and how to package it."""

from __future__ import annotations

from scbp_edge.report.card import summary_card
from scbp_edge.report.sections import Context, Section


def build(ctx: Context) -> Section:
    return Section("card", card=summary_card(ctx.rep, ctx.run_dir))
