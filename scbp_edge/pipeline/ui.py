"""The build's terminal output: one stderr console and rich progress bars with time left."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Progress(Progress):
    """Rich's progress, which also appends each bar's final count to $SCBP_PROGRESS_LOG (for tests of the totals)."""

    def stop(self) -> None:
        super().stop()
        log = os.environ.get("SCBP_PROGRESS_LOG")
        if log:
            with open(log, "a") as f:
                for t in self.tasks:
                    f.write(json.dumps({"bar": t.description, "completed": t.completed, "total": t.total}) + "\n")


def progress() -> Progress:
    """A bar per stage: done/total, time spent and (once something finished) time left."""
    return _Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("left"), TimeRemainingColumn(), console=console, transient=False,
    )
