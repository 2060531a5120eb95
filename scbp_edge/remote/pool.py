"""A pool of SSH devices of one target: chunks are measured in parallel across devices.

Each device runs one chunk at a time (its workers take turns, round by round),
so two measurements never share a device.  A device that drops out is taken
out of the pool and the unfinished candidates of its chunk go back in the
queue, where any healthy device picks them up - also one that had already
run out of work, since devices stay in the pool until no chunk is in flight.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence

from scbp_edge.errors import ProfileError, ScbpError
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.remote.ssh import SshDevice
from scbp_edge.runtimes.base import Runtime
from scbp_edge.targets import Target

OnResult = Callable[[str, object, str | None], None]


def preflight(urls: Sequence[str], imports: tuple[str, ...]) -> list[str]:
    """Check every device before any work; one line naming each problem if none is usable.

    Returns the problems of the unusable ones (the build goes on without them).
    """
    bad = []
    for url in dict.fromkeys(urls):
        dev = None
        try:
            dev = SshDevice(url)
            dev.check(imports)
        except ScbpError as exc:
            bad.append(str(exc))
        finally:
            if dev is not None:
                dev.close()
    if len(bad) == len(dict.fromkeys(urls)):
        raise ProfileError("; ".join(bad))
    return bad


class _Queue:
    """Chunks waiting, chunks in flight, and why each dropped device left."""

    def __init__(self, chunks: list[list[Item]]) -> None:
        self.waiting = deque(chunks)
        self.in_flight = 0
        self.cond = threading.Condition()
        self.dropped: dict[str, str] = {}
        self.retried: set[str] = set()

    def retry_once(self, key: str) -> bool:
        """True the first time ``key`` asks: its connection broke, but the device answered right after."""
        with self.cond:
            first = key not in self.retried
            self.retried.add(key)
            return first

    def take(self) -> list[Item] | None:
        """The next chunk; waits while others are in flight (they may come back); None when all are done."""
        with self.cond:
            while not self.waiting and self.in_flight:
                self.cond.wait()
            if not self.waiting:
                return None
            self.in_flight += 1
            return self.waiting.popleft()

    def done(self, requeue: list[Item] | None = None) -> None:
        with self.cond:
            self.in_flight -= 1
            if requeue:
                self.waiting.append(requeue)
            self.cond.notify_all()

    def drop(self, url: str, why: str) -> None:
        with self.cond:
            self.dropped[url] = why
            self.cond.notify_all()


def profile_on_devices(items: Sequence[Item], target: Target, *, backend: Runtime,
                       urls: Sequence[str], chunk: int, on_result: OnResult,
                       on_round: Callable[[], None] | None = None,
                       on_ready: Callable[[], None] | None = None, reference: Item | None = None,
                       batch: int = 1) -> list[str]:
    """Measure ``items`` on the devices at ``urls`` with ``backend``'s remote worker, ``batch`` images per run.

    ``reference`` is timed beside every chunk, on the same device, for paired speed-ups.

    Returns the urls that dropped out.
    """
    if backend.remote_worker is None:
        raise ProfileError(f"runtime '{backend.name}' cannot run on an SSH device")
    queue = _Queue([list(items[i : i + chunk]) for i in range(0, len(items), chunk)])
    lock = threading.Lock()

    def locked(fn: Callable | None) -> Callable:
        def call(*args):
            if fn is not None:
                with lock:
                    fn(*args)
        return call

    report, ticks = locked(on_result), (locked(on_round), locked(on_ready))
    threads = [threading.Thread(target=_serve, args=(u, queue, target, backend, report, ticks, reference, batch),
                                daemon=True)
               for u in dict.fromkeys(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    why = "; ".join(f"{u}: {w}" for u, w in queue.dropped.items()) or "none reachable"
    for part in queue.waiting:  # every device dropped out
        for it in part:
            on_result(it.key, None, f"no device left in the pool ({why})")
    return list(queue.dropped)


def _serve(url: str, queue: _Queue, target: Target, backend: Runtime, report: OnResult, ticks,
           reference: Item | None, batch: int = 1) -> None:
    dev = SshDevice(url)
    try:
        dev.check(backend.remote_imports)
        with contextlib.suppress(ScbpError):  # best effort: orphans of earlier lost connections
            dev.sweep_stale()
        tmp = dev.mktemp()
        for f in backend.remote_files:
            dev.upload(f, f"{tmp}/{f.name}")
    except ScbpError as exc:
        queue.drop(url, str(exc))
        dev.close()
        return
    try:
        while (part := queue.take()) is not None:
            again, lost = _run_chunk(dev, tmp, part, target, backend, report, ticks, reference, batch, queue)
            queue.done(requeue=again or None)  # the device, not the candidates, failed: measure them again
            if lost:
                queue.drop(url, "lost during a measurement")
                return
    finally:
        with contextlib.suppress(ScbpError):
            dev.remove(tmp)
        dev.close()


def _run_chunk(dev: SshDevice, tmp: str, part: list[Item], target: Target, backend: Runtime, report: OnResult,
               ticks, reference: Item | None, batch: int, queue: _Queue) -> tuple[list[Item], bool]:
    """Measure one chunk on ``dev``: (items to measure again, whether the device is lost).

    A worker whose SSH connection broke (ssh's own exit code, 255) while the device still answers is measured
    once more, on any device: a device going down is seen first as a broken connection, before it stops
    answering (CI saw the pool record such candidates as failed).
    """
    results: dict[str, tuple[object, str | None]] = {}

    def stage(p: Sequence[Item]) -> dict[str, str]:
        where = {}
        for it in p:
            where[it.key] = f"{tmp}/{it.key}{it.artifact.suffix}"
            dev.upload(it.artifact, where[it.key])
        return where

    assert backend.remote_worker is not None
    profile_interleaved(part, target, backend=backend,
                        worker_argv=dev.command(dev.python, f"{tmp}/{backend.remote_worker.name}"),
                        on_result=lambda k, m, e: results.__setitem__(k, (m, e)), chunk=len(part),
                        on_round=ticks[0], on_ready=ticks[1], stage=stage, device=dev.url,
                        extra_config=dev.worker_config(), reference=reference, batch=batch)
    failed = [k for k, (m, _) in results.items() if m is None]
    if failed:
        try:
            dev.check(backend.remote_imports)
        except ProfileError:
            for k, (m, e) in results.items():
                if m is not None:
                    report(k, m, e)
            return [it for it in part if it.key in failed], True
    broken = {k for k in failed if "exited (code 255)" in (results[k][1] or "") and queue.retry_once(k)}
    for k, (m, e) in results.items():
        if k not in broken:
            report(k, m, e)
    return [it for it in part if it.key in broken], False
