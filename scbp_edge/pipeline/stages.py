"""The build's derive and measure stages: each commits every result to the run store as it arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scbp_edge import stop
from scbp_edge.build.config import BuildConfig
from scbp_edge.build.prepare import Prepared
from scbp_edge.build.ui import progress
from scbp_edge.errors import ScbpError
from scbp_edge.store import RunStore


def artifact_path(run_dir: Path, network: str, precision: str) -> Path:
    """The ONNX a candidate is measured and shipped from: the fp32 export (fp16 runtimes build from it) or the QDQ."""
    return run_dir / "onnx" / (f"{network}_int8.onnx" if precision == "int8" else f"{network}.onnx")


def by_network(cands: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cands:
        out.setdefault(c["network"], []).append(c)
    return out


def derive_stage(prep: Prepared, store: RunStore, run_dir: Path, cfg: BuildConfig, executor) -> None:
    """Derive, score, export and quantize every network with a pending candidate."""
    from scbp_edge.tasks import evaluate_network

    nets = {n: rows for n, rows in by_network(store.candidates()).items()
            if any(r["status"] == "pending" for r in rows)}
    if not nets:
        return
    wb = prep.wb
    seed_params = wb.static([0.0] * wb.num_segments).params or 1
    keys = ("bn_x", "val_x", "val_y", "calib_x", "skipped")
    proxy = None if prep.data is None else {k: prep.data[k] for k in keys}
    keep = cfg.keep_models or prep.runtime.source == "torch"
    (run_dir / "onnx").mkdir(exist_ok=True)
    with progress() as prog:
        task = prog.add_task(f"derive + proxy + export ({'/'.join(prep.precisions)}, {executor.name})",
                             total=len(nets))

        told: set[str] = set()

        def on_result(net: str, res: dict[str, Any] | None, err: str | None) -> None:
            _commit_network(store, run_dir, wb, nets[net], res, err)
            prog.advance(task)
            _tell_once(net, res, told)
            stop.check()  # committed first: a stop never loses a finished network

        jobs = [(n, {"ratios": rows[0]["ratios"], "precisions": [r["precision"] for r in rows]})
                for n, rows in nets.items()]
        shared = {"payload": prep.payload(cfg), "data": proxy, "dynamic_batch": cfg.dynamic_batch,
                  "seed_params": seed_params, "keep_model": keep, "int8": int8_settings(cfg, prep)}
        executor.map(evaluate_network, jobs, shared, on_result)


def _tell_once(net: str, res: dict[str, Any] | None, told: set[str]) -> None:
    """Print a reconstruction notice (stronger ridge, inherited layers) once per kind and build."""
    from scbp_edge.build.ui import console
    from scbp_edge.derive.reconstruct import Reconstruction

    if not res or not res.get("ok") or not res.get("reconstruction"):
        return
    rec = Reconstruction.from_dict(res["reconstruction"])
    kind = (bool(rec.strong_ridge), bool(rec.kept_l1))
    if any(kind) and str(kind) not in told:  # once per kind of notice, not once per network
        told.add(str(kind))
        console.print(f"note: {rec.notice()} ({net}; said once per build)", markup=False)


def int8_settings(cfg: BuildConfig, prep: Prepared) -> dict[str, str]:
    return {"calibration": cfg.calibration, "scheme": prep.runtime.capabilities.int8_scheme}


def _commit_network(store: RunStore, run_dir: Path, wb, rows: list[dict[str, Any]], res: dict[str, Any] | None,
                    err: str | None) -> None:
    if res is None or not res["ok"]:
        for r in rows:
            store.fail(r["id"], "derive" if res is None else res["stage"], err or res["error"])  # type: ignore[index]
        return
    net = rows[0]["network"]
    fp32 = artifact_path(run_dir, net, "fp32")
    fp32.write_bytes(res["onnx"]["bytes"])
    if res.get("state") is not None:  # runtimes that time the PyTorch model itself
        from scbp_edge.derive.io import write_derived

        write_derived(run_dir / "models" / f"{net}.pt", res["state"], wb.seed.spec, ignored=res["ignored"],
                      keep=res["keep"], ratios=res["ratios"], candidate_id=net,
                      extra={"reconstruction": res["reconstruction"], "criterion": res["criterion"]})
    for r in rows:
        v = res["variants"][r["precision"]]
        if not v["ok"]:
            store.fail(r["id"], v["stage"], v["error"])
            continue
        path = artifact_path(run_dir, net, r["precision"])
        info = dict(res["onnx"]["info"], path=str(path.relative_to(run_dir)))
        if "bytes" in v:
            path.write_bytes(v["bytes"])
            info.update(size_bytes=len(v["bytes"]), calibration=v["calibration"])
        acc = {k: val for k, val in v.items() if k not in ("ok", "bytes", "calibration")}
        acc["reconstruction"] = res["reconstruction"]  # what the scored (and shipped) weights went through
        static = dict(r["static"] or {}, **res["static"], segment_macs=res["segment_macs"])
        store.update(r["id"], status="exported", onnx=info, accuracy=acc, static=static, stage=None, error=None)


def profile_stage(prep: Prepared, store: RunStore, cfg: BuildConfig, run_dir: Path) -> None:
    """Measure every exported candidate on the target (all of them, or ``--measure-budget`` near the front)."""
    todo = store.candidates("exported")
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
                store.update(cid, status="measured", measurement=m.to_dict())
                got[cid] = m.latency.p50_ms
            else:
                store.fail(cid, "profile", err or "unknown error")
            prog.advance(done)
            stop.check()

        rows = {c["id"]: c for c in store.candidates()}

        def item(cid: str):
            from scbp_edge.profile.runner import Item

            c = rows[cid]
            src = (artifact_path(run_dir, c["network"], c["precision"]) if runtime.source == "onnx"
                   else run_dir / "models" / f"{c['network']}.pt")
            # relative to the run: resumable from anywhere
            art = runtime.compile(src, run_dir / "engines", precision=c["precision"],
                                  workspace_mb=target.workspace_mb, max_batch=max(target.batch_sizes))
            return Item(cid, art, c["precision"])

        reference = _reference(rows, item)

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
            measure([c["id"] for c in todo])
            return
        _budgeted(store, cfg, measure)


def _reference(rows: dict[str, dict[str, Any]], item):
    """The seed at the first precision searched: every chunk times it too, for paired speed-ups."""
    from scbp_edge.rank.points import reference_precision

    prec = reference_precision(list(rows.values()))
    seed = next((c for c in rows.values() if c["reference"] == "seed" and c["precision"] == prec
                 and c["status"] in ("exported", "measured")), None)
    if seed is None:
        return None
    try:
        return item(seed["id"])
    except ScbpError:
        return None


def _budgeted(store: RunStore, cfg: BuildConfig, measure) -> None:
    from scbp_edge.rank.budget import run_budget

    measured = {c["id"]: c["measurement"]["latency"]["p50_ms"] for c in store.candidates("measured")}
    points = [{"id": c["id"], "accuracy": c["accuracy"]["value"] or 0.0, "reference": c["reference"],
               "precision": c["precision"], "segment_macs": c["static"]["segment_macs"]} for c in store.candidates()
              if c["status"] in ("exported", "measured")]
    left = max(0, cfg.measure_budget - len(measured))
    run_budget(points, left, cfg.chunk, lambda ids: measure([i for i in ids if i not in measured]))
    store.set_meta("budget", {"budget": cfg.measure_budget, "measured": len(store.candidates("measured")),
                              "not_measured": len(store.candidates("exported"))})
