"""Report sections: one module each, built once into plain blocks that every format renders alike.

A section is a function ``build(ctx: Context) -> Section | None`` (None: it has
nothing to say in that format). The built-in ones are listed in ``BUILTIN``;
another package adds one with an entry point in the group
``scbp_edge.report_sections`` naming its ``build`` function, and it appears
after the built-in sections in every format. Markdown, the GitHub job summary
and HTML (report/render.py) only lay the blocks out: a new table is written once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GROUP = "scbp_edge.report_sections"
FORMATS = ("markdown", "github", "html")
#: built-in sections by key: module under scbp_edge.report.sections
BUILTIN = {"card": "summary", "details": "details", "candidates": "candidates", "failed": "failed",
           "plots": "figures"}
#: the order per format; HTML shows its pictures before the long table, the Markdown files keep theirs last
ORDER = {"markdown": ("card", "details", "candidates", "failed", "plots"),
         "github": ("card", "details", "candidates", "failed", "plots"),
         "html": ("card", "details", "plots", "candidates", "failed")}


@dataclass(frozen=True)
class Context:
    """What a section is built from: the report, the format, the plot files and the run folder.

    :func:`sections` hands each section the report as its record (``scbp_edge.records.Report``), whether it
    was built in this process or read back from report.json.
    """

    rep: Any  # a Report; a dict read from report.json is decoded by sections()
    fmt: str
    plots: tuple[Path, ...] = ()
    run_dir: str = "RUN_DIR"


@dataclass(frozen=True)
class Table:
    """A table of text cells; ``row_classes`` (one per row: "sel", "front" or "") only colour HTML rows."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    row_classes: tuple[str, ...] = ()
    element_id: str = ""


@dataclass(frozen=True)
class Section:
    """One part of a report, as blocks in this order: the card, an intro, bullets, a table, images."""

    key: str
    title: str | None = None
    card: Any = None  # the summary card (records.Card, made by report/card.py)
    intro: str | None = None
    bullets: tuple[str, ...] = ()
    table: Table | None = None
    images: tuple[Path, ...] = field(default=())


Builder = Callable[[Context], "Section | None"]


def _builtin(key: str) -> Builder:
    return importlib.import_module(f"{__name__}.{BUILTIN[key]}").build


def _third_party() -> dict[str, Builder]:
    from scbp_edge.resources import entry_points

    return {name: _isolated(name, ep.value, ep.load) for name, ep in entry_points(GROUP).items()
            if name not in BUILTIN}


def _isolated(name: str, where: str, load: Callable[[], Builder]) -> Builder:
    """A plugin's section that cannot load or build says so in one line of the report instead of losing it."""

    def build(ctx: Context) -> Section | None:
        try:
            return load()(ctx)
        except Exception as exc:  # noqa: BLE001 - somebody else's code: the report must still be written
            return Section(name, f"Report section '{name}' failed",
                           bullets=(f"{where}: {type(exc).__name__}: {str(exc)[:200]}",))

    return build


def sections(ctx: Context) -> Iterator[Section]:
    """The sections of one report in ``ctx.fmt``, in that format's order, skipping those with nothing to say."""
    from scbp_edge.report import typed

    ctx = replace(ctx, rep=typed(ctx.rep))
    builders = [_builtin(k) for k in ORDER[ctx.fmt]] + list(_third_party().values())
    for build in builders:
        section = build(ctx)
        if section is not None:
            yield section


def number(x: Any, nd: int = 3) -> str:
    """A figure as the report writes it: ``nd`` significant digits, thousands separated, 'n/a' for None."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)
