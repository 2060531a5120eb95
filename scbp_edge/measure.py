"""Where measurements run: this machine, or a pool of SSH devices.  The one place that chooses.

Both ``build`` and ``profile`` come through here, so they resolve targets,
runtimes and devices alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scbp_edge.errors import ProfileError, TargetError
from scbp_edge.profile.runner import Item, profile_interleaved
from scbp_edge.records import Measurement
from scbp_edge.runtimes.base import Runtime
from scbp_edge.targets import Target


def measure_items(items: Sequence[Item], target: Target, runtime: Runtime, devices: Sequence[str], *, chunk: int,
                  on_result: Callable[[str, Measurement | None, str | None], None],
                  on_round: Callable[[], None] | None = None, on_ready: Callable[[], None] | None = None,
                  batch: int = 1, reference: Item | None = None) -> None:
    """Measure ``items`` here, or on ``devices`` when given; each result goes to ``on_result`` as it is known.

    ``reference`` (the seed) is timed beside every chunk for paired speed-ups.
    """
    if devices:
        from scbp_edge.remote.pool import profile_on_devices

        profile_on_devices(items, target, backend=runtime, urls=devices, chunk=chunk, on_result=on_result,
                           on_round=on_round, on_ready=on_ready, reference=reference, batch=batch)
    else:
        profile_interleaved(items, target, backend=runtime, worker_argv=runtime.worker_argv(), on_result=on_result,
                            chunk=chunk, on_round=on_round, on_ready=on_ready, batch=batch, reference=reference)


def profile_one(path: Path, target: Target, devices: Sequence[str] = (), precision: str | None = None) -> Measurement:
    """Profile a single model file (``scbp-edge profile``), here or on the first usable SSH device."""
    from scbp_edge.remote.ssh import check_urls
    from scbp_edge.runtimes import check_target, runtime_for

    check_urls(devices)
    check_target(target)
    runtime = runtime_for(target, remote=bool(devices))
    want = ".onnx" if runtime.source == "onnx" else ".pt"
    if path.suffix != want:
        raise TargetError(f"runtime '{runtime.name}' times {want} files, not '{path.name}'")
    precision = precision or target.precisions[0]
    art = runtime.compile(path, path.parent, precision=precision, workspace_mb=target.workspace_mb)
    got: dict[str, Any] = {}
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)  # it names a file on the device
    measure_items([Item(key, art, precision)], target, runtime, devices, chunk=1,
                  on_result=lambda k, m, e: got.update(m=m, e=e))
    if got.get("m") is None:
        raise ProfileError(got.get("e") or "profiling produced no result")
    return got["m"]
