"""``build``: derive -> export -> accuracy proxy -> measure -> rank -> report, resumable.

Every candidate's progress is committed to the run's SQLite store as soon as
it happens; a candidate that fails is recorded with its stage and error and
the build goes on; ``resume`` redoes only what is not finished.
"""

from __future__ import annotations

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
from scbp_edge.targets import Target

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
    devices: list[str] = field(default_factory=list)
    executor: str = "local"
    ray_address: str | None = None
    retries: int = 2
    measure_budget: int | None = None
    precision: str | None = None  # overrides the target's (e.g. fp32 on a GPU target)
    keep_models: bool = False  # also write every candidate's derived .pt (always, for backends timing them)

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
        try:
            target, backend = _target_backend(cfg)
        except ScbpError:
            store.close()
            raise
        # A lost device or a killed worker is not the candidate's fault: measure those again.
        store.retry_failed(("profile", "compile"))
    else:
        target, backend = _target_backend(cfg)  # fail fast, in one line, before any work or folder
        run_dir = new_run_dir(runs, cfg.seed.seed, Path(cfg.target).stem)
        run_dir.mkdir(parents=True)
        store = RunStore(run_dir / "run.sqlite")
    try:
        ctx = _prepare(cfg, target, store, run_dir)
        _derive_stage(ctx, store, run_dir, cfg, keep_models=cfg.keep_models or backend.source == "torch")
        _profile_stage(store, target, backend, cfg, run_dir)
        _train_stage(ctx, store, run_dir, cfg)
        from scbp_edge.report import write_reports

        write_reports(run_dir, store)
        _fail_if_nothing_measured(store, run_dir)
    finally:
        store.close()
    return run_dir


def _fail_if_nothing_measured(store: RunStore, run_dir: Path) -> None:
    """A build that measured nothing is not a success, even with a report (the work so far is kept)."""
    cands = store.candidates()
    failed = [c for c in cands if c["status"] == "failed"]
    if failed and not any(c["status"] == "measured" for c in cands):
        c = failed[-1]
        raise RunError(f"no candidate was measured: {len(failed)} failed, e.g. {c['id']} at {c['stage']}: "
                       f"{c['error']}; fix that and continue with scbp-edge build --resume {run_dir}")


def _target_backend(cfg: BuildConfig):
    from scbp_edge.runtimes import check_target, resolve_target, runtime_for

    target = resolve_target(cfg.target)
    if cfg.precision:
        from dataclasses import replace

        from scbp_edge.targets import PRECISIONS

        if cfg.precision not in PRECISIONS:
            raise TargetError(f"--precision '{cfg.precision}' is not one of {', '.join(PRECISIONS)}")
        target = replace(target, precisions=[cfg.precision])
    check_target(target)
    backend = runtime_for(target, remote=bool(cfg.devices))
    if cfg.devices:  # an unreachable device is bad input: say so before any work, not after deriving
        from scbp_edge.remote.pool import preflight

        for problem in preflight(cfg.devices, backend.remote_imports):
            console.print(f"warning: {problem}; going on without it", markup=False)
    return target, backend


@dataclass
class _Context:
    wb: Workbench
    data: dict[str, Any] | None  # proxy inputs (bn_x, val_x, val_y, skipped) and train/test ImageSets
    executor: Any


def _prepare(cfg: BuildConfig, target: Target, store: RunStore, run_dir: Path) -> _Context:
    from scbp_edge import defaults
    from scbp_edge.executors import make_executor

    opts = cfg.seed
    if cfg.use_default_seed and opts.weights is None and opts.seed == defaults.DEFAULT_SEED and cfg.data == "digits":
        with _progress() as prog:
            task = prog.add_task("training the default seed on digits (cached)", total=defaults.RECIPE["epochs"])
            opts.weights = str(defaults.default_seed_weights(progress=lambda _e: prog.advance(task)))
        opts.in_channels, opts.input_size = defaults.DEFAULT_INPUT[0], defaults.DEFAULT_INPUT[1]
    if target.input_size and not opts.input_size:
        opts.input_size = target.input_size
    if opts.round_to is None:  # only an explicit --round-to overrides the target's multiple
        opts.round_to = target.round_to
    wb = _workbench(opts, cfg)
    data = _load_data(cfg, wb)
    if data is not None and len(data["train"].classes) != wb.seed.spec.num_classes:
        wb = _adapt_classifier(wb, data, cfg, store)
    cands = store.candidates()
    if not cands:
        with console.status("enumerating the candidate space"):
            space = wb.space(cfg.ratios, monotone=cfg.monotone, exclude=cfg.exclude, limit=cfg.limit,
                             sample_seed=cfg.sample_seed, max_params=cfg.max_params, max_macs=cfg.max_macs,
                             fill_costs=False)  # the derive stage derives each candidate and fills them
        store.add_candidates([
            {"id": c.id, "ratios": c.ratios, "reference": c.reference,
             "static": {"params": c.params, "macs": c.macs, "size_bytes": c.size_bytes}} for c in space
        ])
        store.set_meta("config", cfg.to_dict())
        store.set_meta("target", target.to_dict())
        store.set_meta("seed", wb.seed.spec.to_dict())
        store.set_meta("segmentation", wb.segmentation.to_dict())
        store.set_meta("created", dt.datetime.now().isoformat(timespec="seconds"))
    return _Context(wb, data, make_executor(cfg.executor, cfg.ray_address, cfg.retries))


def _workbench(opts: SeedOptions, cfg: BuildConfig) -> Workbench:
    from scbp_edge import defaults

    if opts.seed == defaults.DEFAULT_SEED and cfg.data == "digits" and opts.in_channels == 1:
        from scbp_edge.seeds import load_seed

        seed = load_seed(opts.seed, opts.weights, input_shape=defaults.DEFAULT_INPUT,
                         mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
        return Workbench(opts, seed)
    return Workbench(opts)


def _load_data(cfg: BuildConfig, wb: Workbench) -> dict[str, Any] | None:
    if not cfg.data:
        return None
    import numpy as np

    from scbp_edge.data import load_dataset, split_val

    spec = wb.seed.spec
    with console.status(f"reading data '{cfg.data}'"):
        train, test = load_dataset(cfg.data, spec.input_shape[1:], spec.input_shape[0])
    rest, val = split_val(train, cfg.val_fraction, 0)
    bn_x, _ = rest.subset(np.arange(min(cfg.bn_images, len(rest)))).tensors(spec.mean, spec.std)
    val_x, val_y = val.tensors(spec.mean, spec.std)
    return {"bn_x": bn_x, "val_x": val_x, "val_y": val_y, "skipped": len(train.skipped) + len(test.skipped),
            "train": rest, "test": test}


def _adapt_classifier(wb: Workbench, data: dict[str, Any], cfg: BuildConfig, store: RunStore) -> Workbench:
    """The data has another class count: new classifier, fine-tuned with the seed, said in the report."""
    from dataclasses import replace

    from scbp_edge.accuracy import evaluate, train
    from scbp_edge.seeds import Seed, build_model

    classes = data["train"].classes
    old = wb.seed.spec
    spec = replace(old, num_classes=len(classes), class_names=tuple(classes))
    model = build_model(spec)
    state = {k: v for k, v in wb.seed.model.state_dict().items()
             if k in model.state_dict() and v.shape == model.state_dict()[k].shape}
    model.load_state_dict(state, strict=False)
    x, y = data["train"].tensors(spec.mean, spec.std)
    with console.status(f"seed has {old.num_classes} classes, data {len(classes)}: training a new classifier"):
        model = train(model, x, y, epochs=max(1, cfg.epochs), lr=cfg.lr)
    tx, ty = data["test"].tensors(spec.mean, spec.std)
    store.set_meta("classifier_replaced", {"from_classes": old.num_classes, "to_classes": len(classes),
                                           "epochs": max(1, cfg.epochs), "test_accuracy": evaluate(model, tx, ty)})
    return Workbench(wb.opts, Seed(spec, model.eval()))


def _derive_stage(ctx: _Context, store: RunStore, run_dir: Path, cfg: BuildConfig, keep_models: bool) -> None:
    from scbp_edge.tasks import evaluate_candidate, seed_payload

    pending = store.candidates("pending")
    if not pending:
        return
    seed_params = ctx.wb.candidate([0.0] * ctx.wb.num_segments)[0].params or 1
    proxy = None if ctx.data is None else {k: ctx.data[k] for k in ("bn_x", "val_x", "val_y", "skipped")}
    (run_dir / "onnx").mkdir(exist_ok=True)
    with _progress() as prog:
        task = prog.add_task(f"derive + export + accuracy proxy ({ctx.executor.name})", total=len(pending))

        def on_result(cid: str, res: dict[str, Any] | None, err: str | None) -> None:
            if res is None:
                store.fail(cid, "derive", err or "task failed")
            elif not res["ok"]:
                store.fail(cid, res["stage"], res["error"])
            else:
                path = run_dir / "onnx" / f"{cid}.onnx"
                path.write_bytes(res["onnx"]["bytes"])
                if res.get("state") is not None:  # backends that time the PyTorch model itself
                    from scbp_edge.derive.io import write_derived

                    write_derived(run_dir / "models" / f"{cid}.pt", res["state"], ctx.wb.seed.spec,
                                  ignored=res["ignored"], keep=res["keep"], ratios=res["ratios"], candidate_id=cid)
                info = dict(res["onnx"]["info"], path=str(path))
                static = dict(static_of[cid], **res["static"], segment_macs=res["segment_macs"])
                store.update(cid, status="exported", onnx=info, accuracy=res["accuracy"], static=static, stage=None,
                             error=None)
            prog.advance(task)

        static_of = {c["id"]: c["static"] for c in pending}
        jobs = [(c["id"], {"ratios": c["ratios"]}) for c in pending]
        shared = {"payload": seed_payload(ctx.wb), "data": proxy, "dynamic_batch": cfg.dynamic_batch,
                  "seed_params": seed_params, "keep_model": keep_models}
        ctx.executor.map(evaluate_candidate, jobs, shared, on_result)


def _profile_stage(store: RunStore, target: Target, backend, cfg: BuildConfig, run_dir: Path) -> None:
    todo = store.candidates("exported")
    if not todo:
        return
    n = min(len(todo), cfg.measure_budget) if cfg.measure_budget else len(todo)
    rounds = target.measure.rounds * ((n + cfg.chunk - 1) // cfg.chunk)
    with _progress() as prog:
        loaded = prog.add_task(backend.loading, total=n)
        task = prog.add_task(f"measuring on {target.name} (interleaved rounds)", total=rounds)
        done = prog.add_task("candidates measured", total=n)
        got: dict[str, float] = {}

        def on_result(cid: str, m, err: str | None) -> None:
            if m is not None:
                store.update(cid, status="measured", measurement=m.to_dict())
                got[cid] = m.latency.p50_ms
            else:
                store.fail(cid, "profile", err or "unknown error")
            prog.advance(done)

        def measure(ids: list[str]) -> dict[str, float]:
            from scbp_edge.measure import measure_items
            from scbp_edge.profile.runner import Item

            items = []
            precision = target.precisions[0]
            for cid in ids:
                # relative to the run: resumable from anywhere
                src = run_dir / "onnx" / f"{cid}.onnx" if backend.source == "onnx" else run_dir / "models" / f"{cid}.pt"
                try:
                    items.append(Item(cid, backend.compile(src, run_dir / "engines", precision=precision,
                                                           workspace_mb=target.workspace_mb), precision))
                except ScbpError as exc:
                    store.fail(cid, "compile", str(exc))
            measure_items(items, target, backend, cfg.devices, chunk=cfg.chunk, on_result=on_result,
                          on_round=lambda: prog.advance(task), on_ready=lambda: prog.advance(loaded))
            return {cid: got[cid] for cid in ids if cid in got}

        if not cfg.measure_budget:
            measure([c["id"] for c in todo])
            return
        from scbp_edge.rank.budget import run_budget

        measured = {c["id"]: c["measurement"]["latency"]["p50_ms"] for c in store.candidates("measured")}
        points = [{"id": c["id"], "accuracy": c["accuracy"]["value"], "reference": c["reference"],
                   "segment_macs": c["static"]["segment_macs"]} for c in store.candidates()
                  if c["status"] in ("exported", "measured")]
        left = max(0, cfg.measure_budget - len(measured))
        run_budget(points, left, cfg.chunk, lambda ids: measure([i for i in ids if i not in measured]))
        store.set_meta("budget", {"budget": cfg.measure_budget, "measured": len(store.candidates("measured")),
                                  "not_measured": len(store.candidates("exported"))})


def _train_stage(ctx: _Context, store: RunStore, run_dir: Path, cfg: BuildConfig) -> None:
    """One-shot training of the top-K plus the seed with the same budget; test accuracy for each."""
    if cfg.top_k <= 0 or ctx.data is None:
        return
    from scbp_edge.derive.io import write_derived
    from scbp_edge.report import _points
    from scbp_edge.tasks import seed_payload, train_candidate

    cands = store.candidates()
    from scbp_edge.rank import pick_top_k

    chosen = pick_top_k(_points(cands), cfg.top_k)
    seed_id = next((c["id"] for c in cands if c["reference"] == "seed" and c["status"] == "measured"), None)
    todo = [c for c in cands if c["id"] in [*chosen, seed_id] and c["trained"] is None]
    if not todo:
        return
    spec = ctx.wb.seed.spec
    x, y = ctx.data["train"].tensors(spec.mean, spec.std)
    tx, ty = ctx.data["test"].tensors(spec.mean, spec.std)
    ratios = {c["id"]: c["ratios"] for c in todo}
    (run_dir / "trained").mkdir(exist_ok=True)
    with _progress() as prog:
        task = prog.add_task(f"one-shot training of top-{cfg.top_k} + seed ({cfg.epochs} epochs each, "
                             f"{ctx.executor.name})", total=len(todo))

        def on_result(cid: str, res: dict[str, Any] | None, err: str | None) -> None:
            prog.advance(task)
            if res is None:
                store.update(cid, stage="train", error=err)
                return
            write_derived(run_dir / "trained" / f"{cid}.pt", res["state"], spec, ignored=res["ignored"],
                          keep=res["keep"], ratios=ratios[cid], candidate_id=cid)
            (run_dir / "trained" / f"{cid}.onnx").write_bytes(res["onnx"]["bytes"])
            store.update(cid, trained={
                "test_accuracy": res["test_accuracy"], "test_accuracy_before": res["test_accuracy_before"],
                "epochs": cfg.epochs, "init": cfg.init, "distill": cfg.distill, "lr": cfg.lr,
                "train_images": res["train_images"], "test_images": res["test_images"],
                "checkpoint": f"trained/{cid}.pt", "onnx": f"trained/{cid}.onnx"})

        shared = {"payload": seed_payload(ctx.wb), "train": {"x": x, "y": y, "test_x": tx, "test_y": ty},
                  "epochs": cfg.epochs, "lr": cfg.lr, "init": cfg.init, "distill": cfg.distill}
        ctx.executor.map(train_candidate, [(c["id"], {"ratios": c["ratios"]}) for c in todo], shared, on_result,
                         gpu=True)
