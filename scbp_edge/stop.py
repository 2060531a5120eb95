"""A stop request (Ctrl-C, SIGTERM) that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread happens to be; when
that is inside a finalizer (``__del__``) or a callback run from C, the
exception is printed as "ignored" and the build would go on to the end.  The
CLI's signal handler therefore also records the request here, and the build
checks it after every finished candidate and between stages.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    """Record that the user asked to stop (called from a signal handler: no imports, no I/O)."""
    _requested.set()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested, so that it takes effect even if its first raise was lost."""
    if _requested.is_set():
        raise KeyboardInterrupt


def clear() -> None:
    """Forget a request (a new command in the same process, e.g. in tests)."""
    _requested.clear()
