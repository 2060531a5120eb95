"""The build's batch stage: every measured candidate timed again at each of the target's batch sizes above 1.

Ranking stays on batch 1 (a robot's camera gives one frame at a time); a
target that declares more (``batch_sizes = [1, 8]``: a desktop GPU serving
several streams) gets each candidate's latency per batch, images per second
and speed-up over the seed at that batch, paired within the same rounds as
at batch 1. A candidate that cannot run a batch keeps its batch-1 figures.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scbp_edge import stop
from scbp_edge.errors import ScbpError
from scbp_edge.pipeline.config import BuildConfig
from scbp_edge.pipeline.prepare import Prepared
from scbp_edge.pipeline.stages import compiled_item, reference_item
from scbp_edge.pipeline.ui import console, progress
from scbp_edge.records import Batched, Measurement
from scbp_edge.store import RunStore


def batch_stage(prep: Prepared, store: RunStore, cfg: BuildConfig, run_dir: Path) -> None:
    """Time each measured candidate at each batch size above 1 that it has no timing for yet (resumable)."""
    sizes = sorted(b for b in set(prep.target.batch_sizes) if b > 1)
    for batch in sizes:
        rows = {r.id: r for r in store.rows()}
        todo = [r for r in rows.values() if r.status == "measured" and r.measurement
                and r.measurement.at_batch(batch) is None]
        if todo:
            _time_batch(prep, store, cfg, run_dir, rows, [r.id for r in todo], batch)


def _time_batch(prep: Prepared, store: RunStore, cfg: BuildConfig, run_dir: Path, rows: dict, ids: list[str],
                batch: int) -> None:
    from scbp_edge.measure import measure_items

    failed: list[str] = []
    with progress() as prog:
        task = prog.add_task(f"timing at batch {batch} on {prep.target.name}", total=len(ids))

        def item(cid: str):
            return compiled_item(prep, run_dir, rows[cid])

        def on_result(cid: str, m: Measurement | None, err: str | None) -> None:
            prog.advance(task)
            if m is None:
                failed.append(f"{cid}: {err}")
                return
            own = rows[cid].measurement
            timing = Batched(m.latency, m.paired.speedup if m.paired else None)
            store.update(cid, measurement=replace(own, batched=[*own.batched, timing]))
            stop.check()

        items = []
        for cid in ids:
            try:
                items.append(item(cid))
            except ScbpError as exc:
                failed.append(f"{cid}: {exc}")
        measure_items(items, prep.target, prep.runtime, cfg.devices, chunk=cfg.chunk, on_result=on_result,
                      batch=batch, reference=reference_item(rows, item))
    if failed:  # the batch-1 figures stand: say which could not be timed, not fail the candidate
        console.print(f"warning: {len(failed)} candidate(s) could not be timed at batch {batch}, e.g. {failed[0]}",
                      markup=False)
