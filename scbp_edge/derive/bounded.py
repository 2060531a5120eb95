"""A time bound on tracing a seed, naming where it was when the bound hit.

Some networks (MaxViT at 224x224) made Torch-Pruning's dependency analysis
run for a quarter of an hour in silence, and timm's RexNet (4.8 M parameters)
spends minutes grouping the channels of its partial residuals after the trace.
Within the bound nothing changes; past it the work stops with one line naming
the stage and where it was: the module last run, or what the analysis last
said it was doing (:func:`note`: the channel group it was resolving).  Uses
SIGALRM, so it bounds work on the main thread only (elsewhere it does nothing).

The default bound follows the seed's size: 30 s under 10 M parameters (a small
network that takes longer is unusual, and its user should hear so quickly),
180 s above.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from torch import nn

from scbp_edge.errors import DeriveError

DEFAULT_SECONDS = 180.0
SMALL_SECONDS = 30.0
SMALL_PARAMS = 10_000_000
_doing: list[str] = []  # what the analysis inside the active bound last said it was doing


def default_seconds(model: nn.Module) -> float:
    """The bound for ``model`` when the user gave none: 30 s under 10 M parameters, else 180 s."""
    return SMALL_SECONDS if sum(p.numel() for p in model.parameters()) < SMALL_PARAMS else DEFAULT_SECONDS


def note(doing: str) -> None:
    """Say what the bounded work is doing now (named if the bound hits before the next note); no-op outside one."""
    if _doing:
        _doing[-1] = doing


class _Expired(BaseException):
    """The alarm: a BaseException (like KeyboardInterrupt) so that a seed's or a library's
    ``except Exception`` on the way cannot swallow it and carry on past the bound."""


@contextlib.contextmanager
def bounded(stage: str, model: nn.Module, seconds: float | None = DEFAULT_SECONDS) -> Iterator[None]:
    """Run the block; past ``seconds``, raise DeriveError naming ``stage`` and where it was.

    ``seconds`` None: :func:`default_seconds` of ``model``; 0: no bound.
    """
    if seconds is None:
        seconds = default_seconds(model)
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    names = {m: n for n, m in model.named_modules()}
    last = {"module": "(no module entered yet)"}

    def enter(mod: nn.Module, _inp) -> None:
        if mod in names:
            last["module"] = f"{names[mod] or '(the whole model)'} ({type(mod).__name__})"
            if _doing:
                _doing[-1] = ""  # running modules again: the module is the better clue

    fired = [False]

    def expire(_signum, _frame) -> None:
        fired[0] = True
        raise _Expired

    handle = nn.modules.module.register_module_forward_pre_hook(enter)
    previous = signal.signal(signal.SIGALRM, expire)
    _doing.append("")
    # Repeats every half second: a library's bare ``except:`` around an import (Torch-Pruning has some) can
    # swallow one alarm, and the next one ends the work all the same.
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
        if fired[0]:  # every alarm was swallowed and the work finished late: still past the bound
            raise _Expired
    except _Expired:
        where = _doing[-1] or f"last module run: {last['module']}"
        raise DeriveError(f"{stage} stopped after {seconds:g} s ({where}); this seed is too large or too unusual "
                          "to analyse in that time: try a smaller --input-size, or --trace-timeout SECONDS to "
                          "wait longer") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        handle.remove()
        _doing.pop()
