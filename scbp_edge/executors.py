"""Executors: where per-candidate tasks run.  ``local`` (default, no Ray) or ``ray`` (optional extra).

``map`` streams each result to ``on_result`` as soon as it is ready, so the
driver commits it to the run store at once; a finished result is never lost or
repeated.  Ray retries tasks whose worker died, up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from scbp_edge.errors import ScbpError
from scbp_edge.records.task import Job

OnResult = Callable[[str, Any, str | None], None]


def check_context(fn: Callable[..., Any], ctx: object) -> None:
    """Raise TypeError, before any task runs, where ``ctx`` is not the context record ``fn`` takes.

    Handing a task another stage's context is the caller's bug: without this
    check each task's AttributeError would be recorded as that candidate's own
    failure and the build would go on, so the mistake would surface only as a
    run of failed candidates. (A context is a record: a renamed field fails
    where it is built.)
    """
    params = list(inspect.signature(fn).parameters)
    try:
        want = typing.get_type_hints(fn).get(params[1]) if len(params) > 1 else None
    except NameError:  # a hint this module cannot resolve: nothing to check against
        return
    if isinstance(want, type) and not isinstance(ctx, want):
        raise TypeError(f"{fn.__name__} takes a {want.__name__}, not a {type(ctx).__name__}")


class LocalExecutor:
    """Runs tasks one after another in this process."""

    name = "local"

    def map(self, fn: Callable[..., Any], jobs: Sequence[Job], ctx: object, on_result: OnResult, *,
            gpu: bool = False, on_progress: Callable[[], None] | None = None) -> None:
        """Calls ``fn(job, ctx)`` per job; ``on_progress`` goes to tasks that report progress (epochs)."""
        extra = {"on_progress": on_progress} if on_progress is not None else {}
        check_context(fn, ctx)
        for job in jobs:
            try:
                res = fn(job, ctx, **extra)
            except Exception as exc:  # noqa: BLE001 - the task's failure is that candidate's alone
                on_result(job.network, None, f"{type(exc).__name__}: {str(exc)[:300]}")
                continue
            # the driver's own failure (a full disk) is not the candidate's: it propagates
            on_result(job.network, res, None)


RAY_RETRIES = 2  # the default of --retries


class RayExecutor:
    """Runs each task as a Ray task with declared resources; results stream back as they finish."""

    name = "ray"

    def __init__(self, address: str | None = None, retries: int | None = None, num_cpus: int | None = None) -> None:
        """``retries``: Ray retries of a task whose worker died (None: ``RAY_RETRIES``)."""
        try:
            import ray
        except ImportError:
            raise ScbpError("--executor ray needs Ray: pip install 'scbp-edge[ray]'") from None
        self.ray = ray
        self.retries = RAY_RETRIES if retries is None else retries
        if address and address != "auto":
            _probe(address)  # ray.init keeps retrying an unreachable GCS for minutes; fail in seconds
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None,
                         include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ScbpError(f"cannot reach Ray cluster at '{address}' ({exc}); start one with "
                                "'ray start --head' or leave --ray-address out for a local one") from None

    def map(self, fn: Callable[..., Any], jobs: Sequence[Job], ctx: object, on_result: OnResult, *,
            gpu: bool = False, on_progress: Callable[[], None] | None = None) -> None:
        """Calls ``fn(job, ctx)`` per job as a Ray task; bars advance per finished task, not within one."""
        ray = self.ray
        check_context(fn, ctx)
        gpus = 1 if gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=self.retries, retry_exceptions=False)(fn)
        ref = ray.put(ctx)  # the shared context goes to the object store once
        pending = {remote.remote(job, ref): job.network for job in jobs}
        # Ray's log monitor prints worker-death notices with print(); keep stdout for --json output.
        with contextlib.redirect_stdout(sys.stderr):
            self._drain(pending, on_result)

    def _drain(self, pending: dict[Any, str], on_result: OnResult) -> None:
        ray = self.ray
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key = pending.pop(ref)
                try:
                    on_result(key, ray.get(ref), None)
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    on_result(key, None, f"failed after {self.retries} retries: {first}")


def _probe(address: str) -> None:
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise ScbpError(f"cannot reach Ray cluster at '{address}' ({exc}); start one with 'ray start --head' "
                        "or leave --ray-address out for a local one") from None


def make_executor(name: str, address: str | None = None, retries: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor called ``name``."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, retries)
    raise ScbpError(f"--executor '{name}' is not one of local, ray")
