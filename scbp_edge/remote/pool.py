"""A pool of SSH devices of one target: chunks are measured in parallel across devices.

Each device runs one chunk at a time (its workers take turns, round by round),
so two measurements never share a device.  A device that drops out is taken
out of the pool and the unfinished candidates of its chunk go back in the queue.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from scbp_edge.backends.base import Backend
from scbp_edge.errors import ProfileError, ScbpError
from scbp_edge.profile.runner import profile_interleaved
from scbp_edge.remote.ssh import SshDevice
from scbp_edge.targets import Target

OnResult = Callable[[str, object, str | None], None]


def preflight(urls: Sequence[str], imports: tuple[str, ...]) -> list[str]:
    """Check every device before any work; one line naming each problem if none is usable.

    Returns the problems of the unusable ones (the build goes on without them).
    """
    bad = []
    for url in dict.fromkeys(urls):
        try:
            SshDevice(url).check(imports)
        except ScbpError as exc:
            bad.append(str(exc))
    if len(bad) == len(dict.fromkeys(urls)):
        raise ProfileError("; ".join(bad))
    return bad


def profile_on_devices(items: Sequence[tuple[str, Path]], target: Target, *, backend: Backend,
                       urls: Sequence[str], chunk: int, on_result: OnResult,
                       on_round: Callable[[], None] | None = None,
                       on_ready: Callable[[], None] | None = None) -> list[str]:
    """Measure ``items`` on the devices at ``urls`` with ``backend``'s remote worker.

    Returns the urls that dropped out.
    """
    worker = backend.remote_worker
    if worker is None:
        raise ProfileError(f"backend '{backend.name}' cannot run on an SSH device")
    queue = deque(items[i : i + chunk] for i in range(0, len(items), chunk))
    lock = threading.Lock()
    dropped: list[str] = []

    def report(key: str, m: object, err: str | None) -> None:
        with lock:
            on_result(key, m, err)

    def tick() -> None:
        if on_round:
            with lock:
                on_round()

    def loaded() -> None:
        if on_ready:
            with lock:
                on_ready()

    def serve(url: str) -> None:
        dev = SshDevice(url)
        try:
            dev.check(backend.remote_imports)
            with contextlib.suppress(ScbpError):  # best effort: orphans of earlier lost connections
                dev.sweep_stale()
            tmp = dev.mktemp()
            dev.upload(worker, f"{tmp}/{worker.name}")
        except ScbpError:
            with lock:
                dropped.append(url)
            return
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    part = queue.popleft()
                if not _run_chunk(dev, tmp, part, target, backend, report, (tick, loaded), queue, lock):
                    with lock:
                        dropped.append(url)
                    return
        finally:
            with contextlib.suppress(ScbpError):
                dev.remove(tmp)

    threads = [threading.Thread(target=serve, args=(u,), daemon=True) for u in dict.fromkeys(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for part in queue:  # every device dropped out
        for key, _ in part:
            on_result(key, None, f"no device left in the pool ({', '.join(dropped)} dropped out)")
    return dropped


def _run_chunk(dev: SshDevice, tmp: str, part, target: Target, backend: Backend, report: OnResult, ticks,
               queue: deque, lock: threading.Lock) -> bool:
    """Measure one chunk on ``dev``; False (chunk re-queued) if the device dropped out meanwhile."""
    results: dict[str, tuple[object, str | None]] = {}

    def stage(p):
        where = {}
        for key, art in p:
            where[key] = f"{tmp}/{key}{art.suffix}"
            dev.upload(art, where[key])
        return where

    assert backend.remote_worker is not None
    profile_interleaved(part, target, backend=backend,
                        worker_argv=dev.command(dev.python, f"{tmp}/{backend.remote_worker.name}"),
                        on_result=lambda k, m, e: results.__setitem__(k, (m, e)), chunk=len(part),
                        on_round=ticks[0], on_ready=ticks[1], stage=stage, device=dev.url,
                        extra_config=dev.worker_config())
    failed = [k for k, (m, _) in results.items() if m is None]
    if failed:
        try:
            dev.check(backend.remote_imports)
        except ProfileError:
            with lock:  # the device, not the candidates, failed: measure them elsewhere
                queue.append([(k, a) for k, a in part if k in failed])
            for k, (m, e) in results.items():
                if m is not None:
                    report(k, m, e)
            return False
    for k, (m, e) in results.items():
        report(k, m, e)
    return True
