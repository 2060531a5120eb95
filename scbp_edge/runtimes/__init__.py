"""Runtimes: one folder each (host side, self-contained worker, parsers, serving code), found by entry point.

Every runtime is registered under the entry-point group ``scbp_edge.runtimes``
(``name = "package.module:RuntimeClass"``), so a third-party runtime is one
installed package.  Classes are imported only when asked for, so optional
runtimes (TensorRT, CUDA) are needed only by the targets that use them.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import metadata
from typing import TYPE_CHECKING

from scbp_edge.errors import BackendUnavailable, TargetError
from scbp_edge.resources import entry_points

if TYPE_CHECKING:
    from scbp_edge.runtimes.base import Runtime
    from scbp_edge.targets import Target

GROUP = "scbp_edge.runtimes"


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint]:
    found = entry_points(GROUP)
    if not found:
        raise TargetError(f"no runtime is registered under the entry-point group '{GROUP}'; reinstall scbp-edge "
                          "(pip install -e . in a checkout)")
    return found


def runtime_names() -> list[str]:
    """Registered runtime names (no runtime module is imported)."""
    return sorted(_entry_points())


@cache
def runtime_class(name: str) -> type[Runtime]:
    """The class registered as ``name``."""
    eps = _entry_points()
    if name not in eps:
        raise TargetError(f"unknown runtime '{name}'; registered: {', '.join(sorted(eps))}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
        raise TargetError(f"runtime '{name}' ({eps[name].value}) cannot be imported: "
                          f"{type(exc).__name__}: {str(exc)[:200]}") from None
    from scbp_edge.runtimes.base import Runtime

    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise TargetError(f"runtime '{name}' ({eps[name].value}) is not a scbp_edge.runtimes.base.Runtime subclass")
    return cls


def get_runtime(name: str, *, remote: bool = False) -> Runtime:
    """Instantiate runtime ``name``; raises BackendUnavailable (one line) if it cannot run here.

    ``remote``: the runtime will time on SSH devices, so what matters is that
    it has a self-contained remote worker, not what this machine has installed.
    """
    rt = runtime_class(name)()
    if remote:
        if "ssh" not in rt.capabilities.locations or rt.remote_worker is None:
            raise BackendUnavailable(f"runtime '{name}' cannot time on an SSH device; drop --device to run it here")
        return rt
    reason = rt.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"runtime '{name}' is unavailable on this machine: {reason}")
    return rt


def runtime_for(target: Target, *, remote: bool = False) -> Runtime:
    """The target's runtime, else its ``fallback_backend``; one line with both reasons if neither runs.

    ``remote``: timed on SSH devices; a target that only runs on a device needs it.
    """
    if target.location == "ssh" and not remote:
        raise TargetError(f"target '{target.name}' runs on a device: pass --device ssh://user@host[:port]")
    try:
        return get_runtime(target.backend, remote=remote)
    except BackendUnavailable as first:
        if not target.fallback_backend:
            raise
        try:
            return get_runtime(target.fallback_backend, remote=remote)
        except BackendUnavailable as second:
            raise BackendUnavailable(f"target '{target.name}': {first}; fallback {second}") from None


def check_target(target: Target) -> None:
    """Refuse, in one line naming the file and field, what the target's runtime cannot do.

    A fallback runtime is not held to the target's list: it runs the part of
    it that it can (the build says which precisions it dropped).
    """
    where = target.source or target.name
    for key in ("backend", "fallback_backend"):
        name = getattr(target, key)
        if name is not None and name not in _entry_points():
            raise TargetError(f"{where}: field '{key}' names unknown runtime {name!r}; registered: "
                              f"{', '.join(runtime_names())}")
    refusal = runtime_class(target.backend).capabilities.refusal(target, target.backend)
    if refusal:
        raise TargetError(refusal)


def resolve_target(name_or_path: str) -> Target:
    """A target file loaded and checked against its runtime's capabilities (one line naming file and field)."""
    from scbp_edge.targets import load_target

    target = load_target(name_or_path)
    check_target(target)
    return target


def capabilities_markdown() -> str:
    """The README's runtime table, generated from the declared capabilities (a test keeps them equal)."""
    rows = ["| runtime | precisions | energy | where | batch sizes | deployable | device Python |",
            "|---|---|---|---|---|---|---|"]
    for name in runtime_names():
        cls = runtime_class(name)
        c = cls.capabilities
        deploy = ("yes" if not cls.serves_with else f"yes (served by {cls.serves_with})") if c.deployable else "no"
        rows.append(f"| {name} | {', '.join(c.precisions)} | {', '.join(c.energy) or 'none'} | "
                    f"{', '.join(c.locations)} | {', '.join(map(str, c.batch_sizes)) if c.batch_sizes else 'any'} | "
                    f"{deploy} | {'.'.join(map(str, c.device_python))}+ |")
    return "\n".join(rows)
