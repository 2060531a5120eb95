"""A time bound on tracing a seed, naming where it was when the bound hit.

Some networks (MaxViT at 224x224) made Torch-Pruning's dependency analysis
run for a quarter of an hour in silence.  Within the bound nothing changes;
past it the work stops with one line naming the stage and the module being
run.  Uses SIGALRM, so it bounds work on the main thread only (elsewhere it
does nothing).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from torch import nn

from scbp_edge.errors import DeriveError

DEFAULT_SECONDS = 180.0


class _Expired(BaseException):
    """The alarm: a BaseException (like KeyboardInterrupt) so that a seed's or a library's
    ``except Exception`` on the way cannot swallow it and carry on past the bound."""


@contextlib.contextmanager
def bounded(stage: str, model: nn.Module, seconds: float | None = DEFAULT_SECONDS) -> Iterator[None]:
    """Run the block; past ``seconds``, raise DeriveError naming ``stage`` and the module last entered."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    names = {m: n for n, m in model.named_modules()}
    last = {"module": "(no module entered yet)"}

    def enter(mod: nn.Module, _inp) -> None:
        if mod in names:
            last["module"] = f"{names[mod] or '(the whole model)'} ({type(mod).__name__})"

    def expire(_signum, _frame) -> None:
        raise _Expired

    handle = nn.modules.module.register_module_forward_pre_hook(enter)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise DeriveError(f"{stage} stopped after {seconds:g} s (last module run: {last['module']}); this seed is "
                          "too large or too unusual to analyse in that time: try a smaller --input-size, or "
                          "--trace-timeout SECONDS to wait longer") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        handle.remove()
