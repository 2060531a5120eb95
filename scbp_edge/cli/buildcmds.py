"""Commands over targets and runs: targets, profile, build, report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from scbp_edge.cli.common import (
    BuildRefineOpt,
    CalibImagesOpt,
    ClassesOpt,
    CriterionOpt,
    DynamicBatchOpt,
    ExcludeOpt,
    InputOpt,
    JsonOpt,
    LimitOpt,
    MaxMacsOpt,
    MaxParamsOpt,
    MonotoneOpt,
    RatiosOpt,
    ReconstructOpt,
    ResidualOpt,
    SampleSeedOpt,
    ScopeOpt,
    SeedOpt,
    SegmentsOpt,
    TraceTimeoutOpt,
    WeightsOpt,
    console,
    emit_json,
    out,
    quiet_stdout,
)

if TYPE_CHECKING:  # records load numpy: kept off the path of --help
    from scbp_edge.records import Card, Report


def targets(json_out: bool = JsonOpt) -> None:
    """List built-in targets, their runtime's capabilities, and whether they can run here."""
    from rich.markup import escape

    from scbp_edge.errors import TargetError
    from scbp_edge.records import encode
    from scbp_edge.runtimes import check_target, runtime_class, runtime_for
    from scbp_edge.targets import list_targets, load_target

    rows = []
    for name in list_targets():
        t = load_target(name)
        short, status = "available", "available"
        try:
            check_target(t)
            rt = runtime_for(t, remote=t.location == "ssh")
            if rt.name != t.backend:
                short = status = f"available through fallback runtime '{rt.name}'"
            if t.location == "ssh":
                short, status = "on a device", "runs on the device: pass --device ssh://user@host"
        except TargetError as exc:
            short, status = "unavailable here", str(exc)
        try:
            caps = encode(runtime_class(t.backend).capabilities)
        except TargetError:
            caps = None
        rows.append({**encode(t), "status": status, "short": short, "capabilities": caps})
    if json_out:
        emit_json([{k: v for k, v in r.items() if k != "short"} for r in rows])
        return
    table = Table(title="targets")
    for col in ("target", "runtime", "precisions", "energy", "status"):
        table.add_column(col, no_wrap=col != "status")
    for r in rows:
        table.add_row(r["name"], r["backend"], ",".join(r["precisions"]), r["energy"], escape(r["short"]))
    out.print(table)
    for r in rows:
        if r["short"] == "unavailable here":
            out.print(f"{r['name']}: {escape(r['status'])}", soft_wrap=True)


def profile(
    model: Path = typer.Argument(..., help="An ONNX file (a derived .pt for the torch-cuda backend)"),
    target: str = typer.Option("cpu", "--target", help="Target name or path to a .toml"),
    device: list[str] = typer.Option([], "--device", help="ssh://user@host[:port] for targets that run on a device"),
    json_out: bool = JsonOpt,
) -> None:
    """Measure any ONNX file on a target (latency percentiles, memory, energy)."""
    from scbp_edge.export.files import check_onnx_file
    from scbp_edge.remote.ssh import check_urls
    from scbp_edge.targets import load_target

    t = load_target(target)
    check_urls(device)  # a malformed URL is one line here, not a thread's traceback in the pool
    if model.suffix != ".pt":
        check_onnx_file(model)
    from scbp_edge.measure import profile_one  # loads torch: only once the inputs are known to be usable
    from scbp_edge.records import encode

    with console.status(f"profiling {model.name} on {t.name}"):
        m = profile_one(model, t, device)
    if json_out:
        emit_json(encode(m))
        return
    lat = m.latency
    table = Table(title=f"{model.name} on {t.name} ({m.backend}, {m.threads} threads)")
    for col in ("p50 ms", "p90 ms", "p99 ms", "mean ms", "CV", "throughput/s", "memory MB", "size MB", "energy mJ"):
        table.add_column(col, justify="right")
    energy = f"{m.energy.mj_per_inference:.3g}" if m.energy.mj_per_inference is not None else "null"
    mem = m.device_memory_mb if m.device_memory_mb is not None else m.memory_mb
    table.add_row(f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", f"{lat.mean_ms:.3f}", f"{lat.cv:.2f}",
                  f"{lat.throughput_ips:.0f}", "n/a" if mem is None else f"{mem:.1f}", f"{m.model_size_mb:.2f}",
                  energy)
    out.print(table)
    if m.energy.reason:
        console.print(f"energy: null - {m.energy.reason}")
    elif m.energy.source:
        console.print(f"energy: {m.energy.source}; above idle {m.energy.above_idle_mj or 0:.3g} mJ")
    if m.info:
        console.print("measured with: " + ", ".join(f"{k}={v}" for k, v in m.info.items()))


def build(
    target: str = typer.Option("cpu", "--target", help="Target name (scbp-edge targets) or path to a .toml"),
    seed: str = SeedOpt, weights: str | None = WeightsOpt, segments: str = SegmentsOpt,
    ratios: str = RatiosOpt,
    round_to: int | None = typer.Option(None, "--round-to", help="Channel multiple of pruned widths (default: the "
                                        "target's)"),
    data: str | None = typer.Option("digits", "--data", help="'digits', a folder with train/ and val|test/, or 'none'"),
    monotone: bool = MonotoneOpt, exclude: list[str] = ExcludeOpt, limit: int | None = LimitOpt,
    scope: str = ScopeOpt,
    sample_seed: int = SampleSeedOpt, max_params: int | None = MaxParamsOpt, max_macs: int | None = MaxMacsOpt,
    speedup: float | None = typer.Option(None, "--speedup", help="Latency budget: at least this many times faster "
                                         "(p50) than the seed measured in the same run, e.g. 1.5"),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Latency budget: p50 at most this"),
    max_memory_mb: float | None = typer.Option(None, "--max-memory-mb", help="Memory limit of the selection"),
    max_size_mb: float | None = typer.Option(None, "--max-size-mb", help="Model file size limit of the selection"),
    max_energy_mj: float | None = typer.Option(None, "--max-energy-mj", help="Per inference (needs a power sensor)"),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help="Points below the seed allowed "
                                            "(without a latency budget)"),
    precision: str | None = typer.Option(None, "--precision", help="Precisions to search, e.g. fp32,int8 (default: "
                                         "the target's, within what its runtime runs)"),
    calib_images: int = CalibImagesOpt, reconstruct: bool = ReconstructOpt, criterion: str = CriterionOpt,
    residual_solve: bool = ResidualOpt, refine_seconds: float = BuildRefineOpt,
    bn_images: int = typer.Option(1024, "--bn-images", help="Train images that re-estimate each candidate's "
                                  "batch-norm statistics (adaptive-BN proxy)"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of the train split held out for "
                                       "validation (proxy scores, teacher choice)"),
    calibration: str = typer.Option("minmax", "--calibration", help="int8 calibration: minmax | entropy | percentile"),
    qat_epochs: int = typer.Option(0, "--qat-epochs", help="Quantization-aware fine-tuning epochs when int8 loses "
                                   "more than --qat-threshold points (0: never)"),
    qat_threshold: float = typer.Option(0.5, "--qat-threshold", help="int8 loss (points) that triggers QAT (0: "
                                        "always, with --qat-epochs)"),
    dynamic_batch: bool = DynamicBatchOpt,
    keep_models: bool = typer.Option(False, "--keep-models", help="Also write each candidate's derived .pt"),
    num_classes: int | None = ClassesOpt, input_size: int | None = InputOpt,
    runs: Path = typer.Option(Path("runs"), "--runs", help="Parent folder of run directories"),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted run directory"),
    chunk: int = typer.Option(8, "--profile-chunk", help="Models measured together in interleaved rounds"),
    executor: str = typer.Option("local", "--executor", help="local | ray: where proxy and training tasks run"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="auto | host:port (default: local Ray; "
                                           "--executor ray only)"),
    retries: int | None = typer.Option(None, "--retries", help="Ray retries of a task whose worker died (default "
                                       "2; --executor ray only)"),
    device: list[str] = typer.Option([], "--device", help="ssh://user@host[:port] (repeat for a pool of devices)"),
    measure_budget: int | None = typer.Option(None, "--measure-budget",
                                              help="Measure only N candidates, chosen near the predicted front"),
    top_k: int = typer.Option(3, "--top-k", help="Networks fine-tuned after ranking, besides the seed (0: none)"),
    margin: int = typer.Option(2, "--margin", help="With a latency budget: networks just outside it also "
                               "fine-tuned"),
    proxy: str = typer.Option("adabn", "--proxy", help="adabn | distill: a short distillation of the shortlist "
                              "before picking what to fine-tune"),
    epochs: int = typer.Option(3, "--epochs", help="Fine-tuning epochs for the picks and the seed"),
    train_minutes: float | None = typer.Option(None, "--train-minutes", help="Time budget of the whole fine-tune "
                                               "stage, shared in proportion to each network's measured step time, so "
                                               "all get about the same epochs (instead of --epochs)"),
    lr: float = typer.Option(0.01, "--lr", help="Peak fine-tuning learning rate (5 % linear warm-up, then cosine "
                             "to zero)"),
    augment: str = typer.Option("shift", "--augment", help="shift (per-image shifts) | flip (shifts and horizontal "
                                "flips: only where a mirrored image keeps its class)"),
    distill: bool = typer.Option(True, "--distill/--no-distill",
                                 help="Pruned networks learn from the seed while fine-tuning (the seed itself: plain)"),
    init: str = typer.Option("inherit", "--init", help="inherit (seed's filters) or scratch"),
    trace_timeout: float | None = TraceTimeoutOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Derive every candidate, export it, measure it on the target, rank on the measured front, report."""
    from scbp_edge.pipeline import build as run_build
    from scbp_edge.pipeline.config import validate
    from scbp_edge.records import BuildConfig, Constraints, SeedOptions
    from scbp_edge.space import split_list

    opts = SeedOptions(seed, weights, num_classes, input_size, segments=segments, round_to=round_to,
                       trace_timeout=trace_timeout)
    cfg = BuildConfig(
        seed=opts, target=target, ratios=ratios, monotone=monotone, exclude=tuple(exclude), limit=limit, scope=scope,
        sample_seed=sample_seed, max_params=max_params, max_macs=max_macs,
        data=None if data in (None, "none") else data, dynamic_batch=dynamic_batch, chunk=chunk, top_k=top_k,
        epochs=epochs, train_minutes=train_minutes, lr=lr, augment=augment, distill=distill, init=init,
        measure_budget=measure_budget, devices=tuple(device), executor=executor,
        ray_address=ray_address, retries=retries, keep_models=keep_models, calib_images=calib_images,
        bn_images=bn_images, val_fraction=val_fraction,
        reconstruct=reconstruct, residual_solve=residual_solve, refine_seconds=refine_seconds, criterion=criterion,
        calibration=calibration, qat_epochs=qat_epochs, qat_threshold=qat_threshold, proxy=proxy, margin=margin,
        precisions=None if precision is None else tuple(split_list(precision, "--precision", "fp32,int8")),
        constraints=Constraints(max_latency_ms, max_memory_mb, max_size_mb, max_accuracy_drop, max_energy_mj,
                                speedup),
    )
    validate(cfg)  # a bad value is one line before torch loads (the build checks the stored run's again)
    with quiet_stdout(json_out):
        rep = run_build(cfg, runs=runs, resume=resume)
    run_dir = Path(rep.run_dir or ".")
    if json_out:
        emit_json({"run_dir": str(run_dir), "selection": rep.selection, "counts": rep.counts})
        return
    _summary(run_dir, rep)


def print_card(card: Card) -> None:
    """The report's summary card in the terminal: values wrap, nothing is cut."""
    from rich.markup import escape

    table = Table(title=card.title, show_header=False, title_justify="left")
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, value in card.rows:
        table.add_row(label, escape(value))
    out.print(table)
    for w in card.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")
    if card.command:
        out.print(f"package it: {escape(card.command)}", soft_wrap=True)


def _summary(run_dir: Path, rep: Report) -> None:
    from scbp_edge.report.card import summary_card

    print_card(rep.card or summary_card(rep, str(run_dir)))
    sel = rep.selection.id
    table = Table(title=f"measured front on {rep.target_name} (fastest first)", title_justify="left")
    table.add_column("candidate", overflow="fold", min_width=14)
    for col in ("acc %", "p50 ms", "x seed", "MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for p in sorted((p for p in rep.points if p.id in rep.front), key=lambda p: p.p50_ms):
        acc = "n/a" if p.accuracy is None else f"{p.accuracy:.2f}" + ("*" if p.accuracy_kind == "test" else "")
        name = p.id + (" <- selected" if p.id == sel else "")
        table.add_row(name, acc, f"{p.p50_ms:.3g}", f"{p.speedup:.2f}" if p.speedup else "n/a", f"{p.size_mb:.2f}")
    out.print(table)
    out.print("acc %: proxy, * = test after fine-tuning; report: " + str(run_dir / "report.html"), soft_wrap=True)


def report(
    run_dir: Path = typer.Argument(..., help="A run directory"),
    fmt: str = typer.Option("md", "--format", help="md | html | json | github (Markdown for a CI job summary)"),
    write: bool = typer.Option(False, "--write", help="Also rewrite the run's report files and plots"),
) -> None:
    """Print a run's report, rendered from its database (its files are left as they are unless --write)."""
    import sys
    import tempfile

    from scbp_edge.errors import RunError
    from scbp_edge.report import build_report, write_reports
    from scbp_edge.report.card import summary_card
    from scbp_edge.report.plots import write_plots
    from scbp_edge.report.render import render_github, render_html, render_markdown
    from scbp_edge.store import RunStore

    if fmt not in ("md", "html", "json", "github"):
        raise RunError(f"--format '{fmt}' is not one of md, html, json, github")
    store = RunStore(run_dir / "run.sqlite", readonly=not write)
    try:
        rep = write_reports(run_dir, store) if write else build_report(store)
        problem = store.integrity_problem()
    finally:
        store.close()
    if rep.card is None:
        rep = replace(rep, card=summary_card(rep, str(run_dir)))
    if fmt == "json":
        emit_json(rep)
    elif fmt == "github":
        sys.stdout.write(render_github(rep, str(run_dir)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            plots = write_plots(Path(tmp), rep) if fmt == "html" else []
            text = (render_html if fmt == "html" else render_markdown)(rep, plots, str(run_dir))
        sys.stdout.write(text)
    if problem or rep.unreadable_rows:
        raise RunError(f"run database of '{run_dir}' is damaged ({problem or 'unreadable rows'}): "
                       f"{rep.unreadable_rows} row(s) could not be read; the report above shows the rest")


def register(app: typer.Typer) -> None:
    """Attach these commands to the main app."""
    for fn in (targets, profile, build, report):
        app.command()(fn)
