"""The build's derive and measure stages: each commits every result to the run store as it arrives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from scbp_edge import stop
from scbp_edge.errors import ScbpError
from scbp_edge.pipeline.config import BuildConfig
from scbp_edge.pipeline.prepare import Prepared
from scbp_edge.pipeline.ui import progress
from scbp_edge.records import CandidateRow, MeasureBudget, Proxy, compact, encode
from scbp_edge.records.reconstruction import Reconstruction
from scbp_edge.records.task import DeriveContext, DerivedNetwork, Failure, NetworkJob, Score, Variant
from scbp_edge.store import RunStore


def artifact_path(run_dir: Path, network: str, precision: str) -> Path:
    """The ONNX a candidate is measured and shipped from: the fp32 export (fp16 runtimes build from it) or the QDQ."""
    return run_dir / "onnx" / (f"{network}_int8.onnx" if precision == "int8" else f"{network}.onnx")


def by_network(rows: list[CandidateRow]) -> dict[str, list[CandidateRow]]:
    """Store rows grouped by network (one row per precision), in store order."""
    out: dict[str, list[CandidateRow]] = {}
    for r in rows:
        out.setdefault(r.network, []).append(r)
    return out


def derive_stage(prep: Prepared, store: RunStore, run_dir: Path, cfg: BuildConfig, executor) -> None:
    """Derive, score, export and quantize every network with a pending candidate."""
    from scbp_edge.tasks import evaluate_network

    nets = {n: rows for n, rows in by_network(store.rows()).items() if any(r.status == "pending" for r in rows)}
    if not nets:
        return
    wb = prep.wb
    seed_params = wb.static([0.0] * wb.num_segments).params or 1
    keep = cfg.keep_models or prep.runtime.source == "torch"
    (run_dir / "onnx").mkdir(exist_ok=True)
    with progress() as prog:
        task = prog.add_task(f"derive + proxy + export ({'/'.join(prep.precisions)}, {executor.name})",
                             total=len(nets))

        told: set[str] = set()

        def on_result(net: str, res: DerivedNetwork | Failure | None, err: str | None) -> None:
            _commit_network(store, run_dir, wb, nets[net], res, err)
            prog.advance(task)
            _tell_once(net, res, told)
            stop.check()  # committed first: a stop never loses a finished network

        jobs = [NetworkJob(n, rows[0].ratios, tuple(r.precision for r in rows), rows[0].scopes)
                for n, rows in nets.items()]
        # a target timed at several batch sizes needs (and ships) an ONNX with a dynamic batch axis
        dynamic = cfg.dynamic_batch or max(prep.target.batch_sizes) > 1
        ctx = DeriveContext(prep.payload(cfg), prep.proxy_data(), dynamic, seed_params, int8_settings(cfg, prep),
                            keep_model=keep)
        executor.map(evaluate_network, jobs, ctx, on_result)


def _tell_once(net: str, res: DerivedNetwork | Failure | None, told: set[str]) -> None:
    """Print a reconstruction notice (stronger ridge, inherited layers) once per kind and build."""
    from scbp_edge.pipeline.ui import console

    if not isinstance(res, DerivedNetwork) or not res.reconstruction:
        return
    rec = res.reconstruction
    kind = (bool(rec.strong_ridge), bool(rec.kept_l1))
    if any(kind) and str(kind) not in told:  # once per kind of notice, not once per network
        told.add(str(kind))
        console.print(f"note: {rec.notice()} ({net}; said once per build)", markup=False)


def int8_settings(cfg: BuildConfig, prep: Prepared) -> dict[str, str]:
    return {"calibration": cfg.calibration, "scheme": prep.runtime.capabilities.int8_scheme}


def _commit_network(store: RunStore, run_dir: Path, wb, rows: list[CandidateRow],
                    res: DerivedNetwork | Failure | None, err: str | None) -> None:
    if not isinstance(res, DerivedNetwork):
        for r in rows:
            store.fail(r.id, res.stage if res else "derive", res.error if res else err or "unknown error")
        return
    net = rows[0].network
    fp32 = artifact_path(run_dir, net, "fp32")
    fp32.write_bytes(res.onnx.data)
    if res.weights is not None:  # runtimes that time the PyTorch model itself
        from scbp_edge.derive.io import write_derived

        w = res.weights
        write_derived(run_dir / "models" / f"{net}.pt", w.state, wb.seed.spec, ignored=w.ignored, keep=w.keep,
                      ratios=list(w.ratios), candidate_id=net,
                      extra={"reconstruction": encode(res.reconstruction), "criterion": res.criterion})
    for r in rows:
        v = res.variants[r.precision]
        if v.failure is not None:
            store.fail(r.id, v.failure.stage, v.failure.error)
            continue
        path = artifact_path(run_dir, net, r.precision)
        info = dict(res.onnx.info, path=str(path.relative_to(run_dir)))
        if v.artifact is not None:
            path.write_bytes(v.artifact)
            info.update(size_bytes=len(v.artifact), calibration=v.calibration)
        static = dict(encode(r.static) if r.static else {}, **res.static, segment_macs=res.segment_macs)
        store.update(r.id, status="exported", onnx=info, accuracy=_stored_proxy(v, res.reconstruction),
                     static=static, stage=None, error=None)


def _stored_proxy(v: Variant, reconstruction: Reconstruction | None) -> dict[str, Any]:
    """A precision's proxy as the store keeps it, with what its (scored and shipped) weights went through.

    Fields that are not known are left out, as the store always wrote them.
    """
    acc = v.accuracy
    if isinstance(acc, Score):  # an int8 artifact scored on its own file
        acc = Proxy(acc.value, acc.kind, extra={"correct": acc.correct, "images": acc.images})
    assert acc is not None  # a precision that did not fail is scored
    return compact(replace(acc, reconstruction=reconstruction))


def profile_stage(prep: Prepared, store: RunStore, cfg: BuildConfig, run_dir: Path) -> None:
    """Measure every exported candidate on the target (all of them, or ``--measure-budget`` near the front)."""
    todo = store.rows("exported")
    if not todo:
        return
    target, runtime = prep.target, prep.runtime
    with progress() as prog:  # totals grow with each measuring call: a budget measures in several
        loaded = prog.add_task(runtime.loading, total=0)
        task = prog.add_task(f"measuring on {target.name} (interleaved rounds)", total=0)
        done = prog.add_task("candidates measured", total=0)
        got: dict[str, float] = {}

        def on_result(cid: str, m, err: str | None) -> None:
            if m is not None:
                store.update(cid, status="measured", measurement=m)
                got[cid] = m.latency.p50_ms
            else:
                store.fail(cid, "profile", err or "unknown error")
            prog.advance(done)
            stop.check()

        rows = {r.id: r for r in store.rows()}

        def item(cid: str):
            return compiled_item(prep, run_dir, rows[cid])

        reference = reference_item(rows, item)

        def measure(ids: list[str]) -> dict[str, float]:
            from scbp_edge.measure import measure_items

            items = []
            prog.update(done, total=prog.tasks[done].total + len(ids))
            for cid in ids:
                try:
                    items.append(item(cid))
                except ScbpError as exc:
                    store.fail(cid, "compile", str(exc))
                    prog.advance(done)
            chunks = (len(items) + cfg.chunk - 1) // cfg.chunk
            prog.update(loaded, total=prog.tasks[loaded].total + len(items))
            prog.update(task, total=prog.tasks[task].total + target.measure.rounds * chunks)
            measure_items(items, target, runtime, cfg.devices, chunk=cfg.chunk, on_result=on_result,
                          on_round=lambda: prog.advance(task), on_ready=lambda: prog.advance(loaded),
                          reference=reference)
            return {cid: got[cid] for cid in ids if cid in got}

        if not cfg.measure_budget:
            measure([r.id for r in todo])
            return
        _budgeted(store, cfg, measure)


def compiled_item(prep: Prepared, run_dir: Path, row: CandidateRow):
    """``row``'s artifact compiled for the target's runtime (engines are cached in the run), as a profiling item."""
    from scbp_edge.profile.runner import Item

    runtime, target = prep.runtime, prep.target
    src = (artifact_path(run_dir, row.network, row.precision) if runtime.source == "onnx"
           else run_dir / "models" / f"{row.network}.pt")
    # relative to the run: resumable from anywhere
    art = runtime.compile(src, run_dir / "engines", precision=row.precision, workspace_mb=target.workspace_mb,
                          max_batch=max(target.batch_sizes))
    return Item(row.id, art, row.precision)


def reference_item(rows: dict[str, CandidateRow], item):
    """The seed at the first precision searched: every chunk times it too, for paired speed-ups.

    A build stores each network's candidates in the order of its precisions, so it is the first seed row.
    """
    seeds = sorted((r for r in rows.values() if r.reference == "seed"), key=lambda r: r.position)
    seed = seeds[0] if seeds and seeds[0].status in ("exported", "measured") else None
    if seed is None:
        return None
    try:
        return item(seed.id)
    except ScbpError:
        return None


def _budgeted(store: RunStore, cfg: BuildConfig, measure) -> None:
    from scbp_edge.rank.budget import BudgetPoint, run_budget

    measured = {r.id: r.measurement.latency.p50_ms for r in store.rows("measured") if r.measurement}
    points = [BudgetPoint(r.id, (r.accuracy.value if r.accuracy else None) or 0.0,
                          tuple(r.static.segment_macs or ()) if r.static else (), r.precision, r.reference)
              for r in store.rows() if r.status in ("exported", "measured")]
    left = max(0, cfg.measure_budget - len(measured))
    run_budget(points, left, cfg.chunk, lambda ids: measure([i for i in ids if i not in measured]))
    store.update_progress(budget=MeasureBudget(cfg.measure_budget, store.count("measured"), store.count("exported")))
