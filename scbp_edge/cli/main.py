"""Entry point: ``scbp-edge``.  Maps ScbpError to one line and a non-zero exit."""

from __future__ import annotations

import sys

import typer

from scbp_edge import stop
from scbp_edge.cli import seedcmds
from scbp_edge.errors import ScbpError


def _hide_flag_types() -> None:
    """Flags take no value, so help should not tag them ``<bool>`` as typer 0.2x does (issue 21)."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_scbp", False):
        return  # an older typer, which shows no type for flags

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - typer's own signature
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._scbp = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_hide_flag_types()
app = typer.Typer(
    name="scbp-edge",
    help="Compress an off-the-shelf CNN with SCBP and rank candidates by measured cost on edge targets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(seedcmds.seeds)
app.command()(seedcmds.inspect)
app.command()(seedcmds.search)
app.command()(seedcmds.derive)


def _register_optional() -> None:
    # Pipeline commands register here; their heavy imports happen inside each command.
    from scbp_edge.cli import buildcmds, shipcmds

    buildcmds.register(app)
    shipcmds.register(app)


def _stop(_signum, _frame) -> None:
    """Ctrl-C and SIGTERM: an orderly stop (finished work is committed, the resume line printed).

    Recorded as well as raised: a KeyboardInterrupt that lands in a finalizer is swallowed by Python,
    and the build then stops at its next check instead of running to the end."""
    stop.request()
    raise KeyboardInterrupt


def main() -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    import signal

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _register_optional()
    try:
        app()
    except ScbpError as err:
        sys.stderr.write(f"error: {err}\n" if err.exit_code != 130 else f"{err}\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished work is saved\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
