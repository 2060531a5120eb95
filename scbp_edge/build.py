"""``build``: derive -> export -> accuracy proxy -> measure -> rank -> report, resumable.

Every candidate's progress is committed to the run's SQLite store as soon as
it happens; a candidate that fails is recorded with its stage and error and
the build goes on; ``resume`` redoes only what is not finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.errors import RunError, ScbpError, TargetError
from scbp_edge.rank import Constraints
from scbp_edge.store import RunStore
from scbp_edge.targets import Target, load_target

console = Console(stderr=True)


@dataclass
class BuildConfig:
    """Everything a build needs; stored in the run so ``--resume`` replays it exactly."""

    seed: SeedOptions = field(default_factory=SeedOptions)
    target: str = "cpu"
    ratios: str = "0,0.25,0.5"
    monotone: bool = False
    exclude: list[str] = field(default_factory=list)
    limit: int | None = None
    sample_seed: int = 0
    max_params: int | None = None
    max_macs: int | None = None
    data: str | None = "digits"
    bn_images: int = 256
    val_fraction: float = 0.1
    dynamic_batch: bool = False
    constraints: Constraints = field(default_factory=Constraints)
    chunk: int = 8
    use_default_seed: bool = True
    top_k: int = 3
    epochs: int = 3
    distill: bool = False
    init: str = "inherit"
    lr: float = 0.02
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        d = dict(d)
        d["seed"] = SeedOptions(**d["seed"])
        d["constraints"] = Constraints(**d["constraints"])
        return cls(**d)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


def new_run_dir(runs: Path, seed: str, target: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", seed.split(":")[-1])
    path = runs / f"{stamp}-{safe}-{target}"
    n = 1
    while path.exists():
        n += 1
        path = runs / f"{stamp}-{safe}-{target}-{n}"
    return path


def build(cfg: BuildConfig, runs: Path = Path("runs"), resume: Path | None = None) -> Path:
    """Run (or resume) a build; returns the run directory."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "run.sqlite").is_file():
            raise RunError(f"'{run_dir}' is not a run directory (no run.sqlite); pass the folder a build printed")
        store = RunStore(run_dir / "run.sqlite")
        saved = store.get_meta("config")
        if saved is None:
            raise RunError(f"'{run_dir}' has no saved configuration; start a new build")
        cfg = BuildConfig.from_dict(saved)
        # A lost device or a killed worker is not the candidate's fault: measure those again.
        store.retry_failed(("profile", "compile"))
    else:
        run_dir = new_run_dir(runs, cfg.seed.seed, Path(cfg.target).stem)
        run_dir.mkdir(parents=True)
        store = RunStore(run_dir / "run.sqlite")
    target = load_target(cfg.target)
    from scbp_edge.backends import get_backend

    backend = get_backend(target.backend)  # fail fast, in one line, before any work
    if target.location == "ssh" and not cfg.device:
        raise TargetError(f"target '{target.name}' runs on a device: pass --device ssh://user@host[:port]")
    if cfg.device and target.backend != "onnxruntime":
        raise TargetError(f"remote profiling with backend '{target.backend}' is not implemented; only onnxruntime")
    try:
        ctx = _prepare(cfg, target, store, run_dir)
        _derive_stage(ctx, store, run_dir, cfg)
        _profile_stage(store, target, backend, cfg, run_dir)
        _train_stage(ctx, store, run_dir, cfg)
        from scbp_edge.report import write_reports

        write_reports(run_dir, store)
    finally:
        store.close()
    return run_dir


@dataclass
class _Data:
    bn_x: Any
    val_x: Any
    val_y: Any
    train: Any  # ImageSet, validation images removed
    test: Any  # ImageSet, used only for final reported numbers
    skipped: int


@dataclass
class _Context:
    wb: Workbench
    data: _Data | None


def _prepare(cfg: BuildConfig, target: Target, store: RunStore, run_dir: Path) -> _Context:
    from scbp_edge import defaults

    opts = cfg.seed
    if cfg.use_default_seed and opts.weights is None and opts.seed == defaults.DEFAULT_SEED and cfg.data == "digits":
        with _progress() as prog:
            task = prog.add_task("training the default seed on digits (cached)", total=defaults.RECIPE["epochs"])
            opts.weights = str(defaults.default_seed_weights(progress=lambda _e: prog.advance(task)))
        opts.in_channels, opts.input_size = defaults.DEFAULT_INPUT[0], defaults.DEFAULT_INPUT[1]
    if target.input_size and not opts.input_size:
        opts.input_size = target.input_size
    if store.get_meta("config") is None:
        opts.round_to = target.round_to if opts.round_to == 8 else opts.round_to
    wb = _workbench(opts, cfg)
    data = _load_data(cfg, wb)
    cands = store.candidates()
    if not cands:
        with console.status("enumerating the candidate space"):
            space = wb.space(cfg.ratios, monotone=cfg.monotone, exclude=cfg.exclude, limit=cfg.limit,
                             sample_seed=cfg.sample_seed, max_params=cfg.max_params, max_macs=cfg.max_macs)
        store.add_candidates([
            {"id": c.id, "ratios": c.ratios, "reference": c.reference,
             "static": {"params": c.params, "macs": c.macs, "size_bytes": c.size_bytes}} for c in space
        ])
        store.set_meta("config", cfg.to_dict())
        store.set_meta("target", target.to_dict())
        store.set_meta("seed", wb.seed.spec.to_dict())
        store.set_meta("segmentation", wb.segmentation.to_dict())
        store.set_meta("created", dt.datetime.now().isoformat(timespec="seconds"))
    return _Context(wb, data)


def _workbench(opts: SeedOptions, cfg: BuildConfig) -> Workbench:
    from scbp_edge import defaults

    if opts.seed == defaults.DEFAULT_SEED and cfg.data == "digits" and opts.in_channels == 1:
        from scbp_edge.seeds import load_seed

        seed = load_seed(opts.seed, opts.weights, input_shape=defaults.DEFAULT_INPUT,
                         mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
        return Workbench(opts, seed)
    return Workbench(opts)


def _load_data(cfg: BuildConfig, wb: Workbench):
    if not cfg.data:
        return None
    from scbp_edge.data import load_dataset, split_val
    from scbp_edge.errors import DataError

    spec = wb.seed.spec
    with console.status(f"reading data '{cfg.data}'"):
        train, _test = load_dataset(cfg.data, spec.input_shape[1:], spec.input_shape[0])
    if len(train.classes) != spec.num_classes:
        raise DataError(
            f"data has {len(train.classes)} classes but seed {spec.name} has {spec.num_classes}; "
            f"pass --num-classes {len(train.classes)} with matching --weights"
        )
    rest, val = split_val(train, cfg.val_fraction, 0)
    bn = rest.subset(__import__("numpy").arange(min(cfg.bn_images, len(rest))))
    bn_x, _ = bn.tensors(spec.mean, spec.std)
    val_x, val_y = val.tensors(spec.mean, spec.std)
    return _Data(bn_x, val_x, val_y, rest, _test, len(train.skipped) + len(_test.skipped))


def _derive_stage(ctx: _Context, store: RunStore, run_dir: Path, cfg: BuildConfig) -> None:
    from scbp_edge.export.onnx import export_onnx

    pending = store.candidates("pending")
    if not pending:
        return
    seed_params = ctx.wb.candidate([0.0] * ctx.wb.num_segments)[0].params or 1
    with _progress() as prog:
        task = prog.add_task("derive + export + accuracy proxy", total=len(pending))
        for c in pending:
            stage = "derive"
            try:
                _cand, model = ctx.wb.candidate(c["ratios"])
                stage = "export"
                info = export_onnx(model, ctx.wb.seed.spec.input_shape, run_dir / "onnx" / f"{c['id']}.onnx",
                                   dynamic_batch=cfg.dynamic_batch)
                stage = "accuracy"
                acc = _accuracy(model, ctx.data, c["static"]["params"], seed_params)
                store.update(c["id"], status="exported", onnx=info.to_dict(), accuracy=acc, stage=None, error=None)
            except ScbpError as exc:
                store.fail(c["id"], stage, str(exc))
            except Exception as exc:  # noqa: BLE001 - one candidate's crash must not end the build
                store.fail(c["id"], stage, f"{type(exc).__name__}: {str(exc)[:300]}")
            prog.advance(task)


def _accuracy(model, data, params: int, seed_params: int) -> dict[str, Any]:
    if data is None:
        return {"value": 100.0 * params / seed_params, "kind": "params-retained % (stand-in, no data)"}
    from scbp_edge.accuracy import adapt_bn, evaluate

    stale = evaluate(model, data.val_x, data.val_y)
    adapt_bn(model, data.bn_x)
    return {"value": evaluate(model, data.val_x, data.val_y), "kind": "proxy: adaptive-BN top-1 on validation split",
            "stale_bn": stale, "bn_images": len(data.bn_x), "val_images": len(data.val_x),
            "skipped_images": data.skipped}


def _profile_stage(store: RunStore, target: Target, backend, cfg: BuildConfig, run_dir: Path) -> None:
    from scbp_edge.profile.runner import profile_interleaved

    todo = store.candidates("exported")
    if not todo:
        return
    rounds = target.measure.rounds * ((len(todo) + cfg.chunk - 1) // cfg.chunk)
    with _progress() as prog:
        task = prog.add_task(f"measuring on {target.name} (interleaved rounds)", total=rounds)
        done = prog.add_task("candidates measured", total=len(todo))

        def on_result(cid: str, m, err: str | None) -> None:
            if m is not None:
                store.update(cid, status="measured", measurement=m.to_dict())
            else:
                store.fail(cid, "profile", err or "unknown error")
            prog.advance(done)

        items = []
        for c in todo:
            onnx_path = run_dir / "onnx" / f"{c['id']}.onnx"  # relative to the run: resumable from anywhere
            try:
                art = backend.compile(onnx_path, onnx_path.parent, precision=target.precision,
                                      workspace_mb=target.workspace_mb)
                items.append((c["id"], art))
            except ScbpError as exc:
                store.fail(c["id"], "compile", str(exc))
        if cfg.device:
            _profile_remote(items, target, backend, cfg, on_result, lambda: prog.advance(task))
        else:
            profile_interleaved(items, target, backend_name=backend.name, worker_argv=backend.worker_argv(),
                                on_result=on_result, chunk=cfg.chunk, on_round=lambda: prog.advance(task))


def _profile_remote(items, target: Target, backend, cfg: BuildConfig, on_result, on_round) -> None:
    """Profile on an SSH device: upload the worker and each chunk's models to a temp dir, remove it after."""
    from scbp_edge.backends.onnxruntime import WORKER
    from scbp_edge.profile.runner import profile_interleaved
    from scbp_edge.remote.ssh import SshDevice

    dev = SshDevice(cfg.device or "")
    dev.check()
    tmp = dev.mktemp()
    try:
        dev.upload(WORKER, f"{tmp}/ort_worker.py")

        def stage(part):
            where = {}
            for key, art in part:
                where[key] = f"{tmp}/{key}.onnx"
                dev.upload(art, where[key])
            return where

        profile_interleaved(items, target, backend_name=backend.name,
                            worker_argv=dev.command(dev.python, f"{tmp}/ort_worker.py"), on_result=on_result,
                            chunk=cfg.chunk, on_round=on_round, stage=stage, device=dev.url)
    finally:
        with contextlib.suppress(ScbpError):  # a lost connection already failed the candidates
            dev.remove(tmp)


def pick_top_k(points: list[dict[str, Any]], k: int) -> list[str]:
    """K candidates spread along the front of proxy accuracy vs measured p50 (seed excluded)."""
    from scbp_edge.rank import pareto_front

    front = set(pareto_front(points, (("accuracy", "max"), ("p50_ms", "min"))))
    on = sorted((p for p in points if p["id"] in front and p["reference"] != "seed"), key=lambda p: p["p50_ms"])
    if len(on) <= k:
        return [p["id"] for p in on]
    step = (len(on) - 1) / max(1, k - 1)
    return list(dict.fromkeys(on[round(i * step)]["id"] for i in range(k)))


def _train_stage(ctx: _Context, store: RunStore, run_dir: Path, cfg: BuildConfig) -> None:
    """One-shot training of the top-K plus the seed with the same budget; test accuracy for each."""
    if cfg.top_k <= 0 or ctx.data is None:
        return
    from scbp_edge.report import _points

    cands = store.candidates()
    chosen = pick_top_k(_points(cands), cfg.top_k)
    seed_id = next((c["id"] for c in cands if c["reference"] == "seed" and c["status"] == "measured"), None)
    todo = [c for c in cands if c["id"] in chosen + [seed_id] and c["trained"] is None]
    if not todo:
        return
    spec = ctx.wb.seed.spec
    x, y = ctx.data.train.tensors(spec.mean, spec.std)
    tx, ty = ctx.data.test.tensors(spec.mean, spec.std)
    with _progress() as prog:
        task = prog.add_task(f"one-shot training of top-{cfg.top_k} + seed ({cfg.epochs} epochs each)",
                             total=len(todo) * cfg.epochs)
        for c in todo:
            try:
                store.update(c["id"], trained=_train_one(ctx, c, cfg, run_dir, x, y, tx, ty,
                                                         lambda _e: prog.advance(task)))
            except Exception as exc:  # noqa: BLE001 - a failed training is recorded, the others go on
                store.update(c["id"], stage="train", error=f"{type(exc).__name__}: {str(exc)[:300]}")


def _train_one(ctx: _Context, c: dict[str, Any], cfg: BuildConfig, run_dir: Path, x, y, tx, ty, on_epoch):
    import torch

    from scbp_edge.accuracy import evaluate, train
    from scbp_edge.derive.io import save_derived
    from scbp_edge.export.onnx import export_onnx

    _, model = ctx.wb.candidate(c["ratios"])
    if cfg.init == "scratch":
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    before = evaluate(model, tx, ty)
    teacher = ctx.wb.seed.model if cfg.distill else None
    torch.manual_seed(0)
    model = train(model, x, y, epochs=cfg.epochs, lr=cfg.lr, teacher=teacher, on_epoch=on_epoch)
    acc = evaluate(model, tx, ty)
    ckpt = save_derived(run_dir / "trained" / f"{c['id']}.pt", model, ctx.wb.seed.spec,
                        ignored=ctx.wb.deriver.ignored, keep=ctx.wb.deriver.plan(c["ratios"]),
                        ratios=c["ratios"], candidate_id=c["id"])
    onnx = export_onnx(model, ctx.wb.seed.spec.input_shape, run_dir / "trained" / f"{c['id']}.onnx")
    return {"test_accuracy": acc, "test_accuracy_before": before, "epochs": cfg.epochs, "init": cfg.init,
            "distill": cfg.distill, "lr": cfg.lr, "train_images": len(x), "test_images": len(tx),
            "checkpoint": str(ckpt.relative_to(run_dir)), "onnx": str(Path(onnx.path).relative_to(run_dir))}
