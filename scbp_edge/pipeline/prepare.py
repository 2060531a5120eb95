"""Everything a build checks before it makes a run folder: target, runtime, precisions, seed, data, space.

A bad value anywhere is one line and no folder; what is returned is all the
later stages need.  Nothing here writes to a run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.errors import ScbpError, TargetError
from scbp_edge.pipeline.config import BuildConfig, validate
from scbp_edge.pipeline.ui import console, progress
from scbp_edge.records.report import ClassifierSwap, DataSummary
from scbp_edge.records.task import Calibration, ProxyData, SeedPayload, TrainData
from scbp_edge.runtimes.base import Runtime
from scbp_edge.space import Candidate
from scbp_edge.targets import Target

if TYPE_CHECKING:
    import torch

    from scbp_edge.data import ImageSet
    from scbp_edge.seeds import SeedSpec


@dataclass(frozen=True)
class BuildData:
    """A build's images at the seed's input size: its splits, and the BN and calibration samples of the train split.

    Tasks get the parts they need as records (:meth:`proxy`, :meth:`for_training`), never this whole.
    """

    train: ImageSet  # the train split less the validation images
    test: ImageSet
    bn_x: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    skipped_files: list[str]

    def proxy(self) -> ProxyData:
        """What every candidate's adaptive-BN proxy and int8 calibration see."""
        return ProxyData(self.bn_x, self.val_x, self.val_y, self.calib_x, len(self.skipped_files))

    def for_training(self, spec: SeedSpec) -> TrainData:
        """The fine-tune's images as tensors: train, test, calibration and validation (the seed's judgement)."""
        x, y = self.train.tensors(spec.mean, spec.std)
        tx, ty = self.test.tensors(spec.mean, spec.std)
        return TrainData(x, y, tx, ty, self.calib_x, self.val_x, self.val_y)

    def timing_batch(self, spec: SeedSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images a step is timed on (one batch of 64), as tensors."""
        return self.train.subset(np.arange(min(64, len(self.train)))).tensors(spec.mean, spec.std)


@dataclass
class Prepared:
    """A checked build: its configuration as completed, target and runtime, precisions, seed, data and space."""

    cfg: BuildConfig
    target: Target
    runtime: Runtime
    precisions: list[str]
    wb: Workbench
    data: BuildData | None
    space: list[Candidate]
    notes: list[str]

    def payload(self, cfg: BuildConfig) -> SeedPayload:
        """What every task needs to rebuild this build's seed, channel choice and reconstruction."""
        from scbp_edge.tasks import seed_payload

        calib = None if self.data is None else Calibration(self.data.calib_x, self.data.calib_y, cfg.criterion,
                                                            cfg.reconstruct, cfg.residual_solve)
        return seed_payload(self.wb, calib)

    def data_counts(self) -> DataSummary | None:
        """Images per split and the files left out, for the report."""
        if self.data is None:
            return None
        return DataSummary(len(self.data.train), len(self.data.val_y), len(self.data.test),
                           tuple(self.data.skipped_files))

    def proxy_data(self) -> ProxyData | None:
        """The proxy's images (None without data: the proxy is the share of parameters kept)."""
        return None if self.data is None else self.data.proxy()

    def fingerprints(self) -> dict[str, Any]:
        """What makes two runs comparable: weights, data, classes, target, precisions (compare checks them)."""
        import hashlib

        weights = self.wb.opts.weights
        digest = None
        if weights and Path(weights).is_file():
            h = hashlib.sha256()
            with open(weights, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
        data = None
        if self.data is not None:
            h = hashlib.sha256()
            for split in (self.data.train, self.data.test):
                h.update(split.images.tobytes())
                h.update(split.labels.tobytes())
            data = h.hexdigest()
        return {"weights_sha256": digest or weights or "untrained", "data": data,
                "classes": list(self.data.train.classes) if self.data else None, "target": self.target.name,
                "precisions": self.precisions}


def resolve(cfg: BuildConfig) -> tuple[Target, Runtime, list[str], list[str]]:
    """Target, runtime, the precisions to search and notes; refuses what the runtime cannot run."""
    from scbp_edge.runtimes import resolve_target, runtime_for

    target = resolve_target(cfg.target)
    runtime = runtime_for(target, remote=bool(cfg.devices))
    can = runtime.capabilities.precisions
    notes: list[str] = []
    if cfg.precisions:
        bad = [p for p in cfg.precisions if p not in can]
        if bad:
            raise TargetError(f"--precision {','.join(bad)}: runtime '{runtime.name}' of target '{target.name}' "
                              f"cannot run it (it runs {', '.join(can)})")
        precisions = list(dict.fromkeys(cfg.precisions))
    else:
        precisions = [p for p in target.precisions if p in can]
        dropped = [p for p in target.precisions if p not in can]
        if dropped:
            notes.append(f"{', '.join(dropped)} not searched: runtime '{runtime.name}' cannot run it")
        if not precisions:
            raise TargetError(f"runtime '{runtime.name}' runs none of target '{target.name}''s precisions "
                              f"({', '.join(target.precisions)}); pass --precision {can[0]}")
    if "int8" in precisions and not cfg.data:
        if cfg.precisions:
            raise ScbpError("--precision int8 needs images to calibrate on: give --data (its train split is used)")
        precisions.remove("int8")
        notes.append("int8 not searched: calibration needs --data")
        if not precisions:
            raise ScbpError(f"target '{target.name}' searches only int8, which needs --data to calibrate")
    if cfg.constraints.max_energy_mj is not None and not cfg.devices:
        why = runtime.energy_problem(target)
        if why:
            raise TargetError(f"--max-energy-mj needs a power sensor, and none can be read here: {why}; drop the "
                              "limit, or build for a target that measures energy")
    if cfg.devices:  # an unreachable device is bad input: say so before any work, not after deriving
        from scbp_edge.remote.pool import preflight

        for problem in preflight(cfg.devices, runtime.remote_imports):
            console.print(f"warning: {problem}; going on without it", markup=False)
    return target, runtime, precisions, notes


def prepare(cfg: BuildConfig) -> Prepared:
    """Check ``cfg`` in full (one line per problem, nothing written) and load what the build works on."""
    validate(cfg)
    target, runtime, precisions, notes = resolve(cfg)
    opts = cfg.seed
    if target.input_size and not opts.input_size:
        opts = replace(opts, input_size=target.input_size)
    if opts.round_to is None:  # only an explicit --round-to overrides the target's multiple
        opts = replace(opts, round_to=target.round_to)
    wb = _workbench(opts, cfg)
    cfg = replace(cfg, seed=wb.opts)  # stored as the build ran it: --resume replays these values
    data = load_data(cfg, wb)
    if data is not None and cfg.train_minutes and cfg.top_k > 0:
        _check_time_budget(cfg, wb, data)
    if data is None:
        skipped = [what for what, on in (("the distillation proxy (--proxy distill)", cfg.proxy == "distill"),
                                         ("fine-tuning", cfg.top_k > 0), ("reconstruction", cfg.reconstruct)) if on]
        if skipped:
            notes.append(f"without data (--data none), {', '.join(skipped)} did not run and no accuracy is claimed")
    with console.status("enumerating the candidate space"):
        space = wb.space(cfg.ratios, monotone=cfg.monotone, exclude=cfg.exclude, limit=cfg.limit,
                         sample_seed=cfg.sample_seed, max_params=cfg.max_params, max_macs=cfg.max_macs,
                         scope=cfg.scope)
    return Prepared(cfg, target, runtime, precisions, wb, data, space, notes)


def _workbench(opts: SeedOptions, cfg: BuildConfig) -> Workbench:
    from scbp_edge import defaults
    from scbp_edge.seeds import load_seed

    default = (cfg.use_default_seed and opts.seed == defaults.DEFAULT_SEED and cfg.data == "digits"
               and (opts.weights is None or opts.in_channels == 1))
    if not default:
        return Workbench(opts)
    if opts.weights is None and defaults.cached_seed_path().is_file():
        opts = replace(opts, weights=str(defaults.cached_seed_path()))  # no progress bar for work that is not done
    elif opts.weights is None:
        with progress() as prog:
            task = prog.add_task("training the default seed on digits (once; cached)", total=defaults.RECIPE.epochs)
            opts = replace(opts, weights=str(defaults.default_seed_weights(progress=lambda _e: prog.advance(task))))
    opts = replace(opts, in_channels=defaults.DEFAULT_INPUT[0], input_size=defaults.DEFAULT_INPUT[1])
    seed = load_seed(opts.seed, opts.weights, input_shape=defaults.DEFAULT_INPUT, mean=defaults.DIGITS_MEAN,
                     std=defaults.DIGITS_STD)
    return Workbench(opts, seed)


def _sample(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded random sample of indices, in random order: a split read from class folders is sorted by class."""
    return np.random.default_rng(seed).permutation(n_total)[: min(n, n_total)]


def load_data(cfg: BuildConfig, wb: Workbench) -> BuildData | None:
    """Train/val/test splits at the seed's input size, the BN and calibration samples (train split only)."""
    if not cfg.data:
        return None
    from scbp_edge.data import load_dataset, read_warnings, split_val

    spec = wb.seed.spec
    with console.status(f"reading data '{cfg.data}'"):
        train, test = load_dataset(cfg.data, spec.input_shape[1:], spec.input_shape[0])
    for line in read_warnings(train, test):
        console.print(f"warning: {line}", markup=False)
    skipped = train.skipped + test.skipped
    rest, val = split_val(train, cfg.val_fraction, 0)
    if len(val) == 0:
        console.print("warning: the validation split is empty (one image per class?): proxy accuracy is n/a; "
                      "add images or raise --val-fraction", markup=False)
    bn_x, _ = rest.subset(_sample(len(rest), cfg.bn_images, 1)).tensors(spec.mean, spec.std)
    calib_x, calib_y = rest.subset(_sample(len(rest), cfg.calib_images, 2)).tensors(spec.mean, spec.std)
    val_x, val_y = val.tensors(spec.mean, spec.std)
    return BuildData(rest, test, bn_x, calib_x, calib_y, val_x, val_y, list(skipped))


def _check_time_budget(cfg: BuildConfig, wb: Workbench, data: BuildData) -> None:
    """Refuse a --train-minutes too small to fine-tune the seed at all, before a run folder exists.

    A run replays its stored settings on --resume, so this is the only place the
    value can still be changed without losing work.
    """
    from scbp_edge.accuracy import PROBE_STEPS, step_seconds

    step = step_seconds(wb.seed.model, *data.timing_batch(wb.seed.spec))
    least = (PROBE_STEPS + 1) * step
    need = least * (cfg.top_k + 1)  # the seed's speed for every network: an upper bound
    if cfg.train_minutes * 60 < least:
        raise ScbpError(f"--train-minutes {cfg.train_minutes:g} is too small to fine-tune anything: one training "
                        f"step of the seed takes {step:.2f} s on this machine and the fine-tune times "
                        f"{PROBE_STEPS + 1} steps before it fits the rest; pass at least {need / 60:.2f} for "
                        f"{cfg.top_k + 1} networks, or use --epochs")


def adapt_classifier(wb: Workbench, data: BuildData, cfg: BuildConfig, run_dir: Path
                     ) -> tuple[Workbench, ClassifierSwap]:
    """The data has another class count: a new classifier, fine-tuned with the seed, kept in the run for resumes."""
    import torch

    from scbp_edge.accuracy import evaluate, train
    from scbp_edge.seeds import Seed, build_model

    classes = data.train.classes
    old = wb.seed.spec
    spec = replace(old, num_classes=len(classes), class_names=tuple(classes))
    model = build_model(spec)
    saved = run_dir / "seed-adapted.pt"
    if saved.is_file():
        model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
    else:
        state = {k: v for k, v in wb.seed.model.state_dict().items()
                 if k in model.state_dict() and v.shape == model.state_dict()[k].shape}
        model.load_state_dict(state, strict=False)
        x, y = data.train.tensors(spec.mean, spec.std)
        with console.status(f"seed has {old.num_classes} classes, data {len(classes)}: training a new classifier"):
            model = train(model, x, y, epochs=max(1, cfg.epochs), lr=cfg.lr)
        torch.save(model.state_dict(), saved.with_suffix(".part"))
        saved.with_suffix(".part").replace(saved)
    tx, ty = data.test.tensors(spec.mean, spec.std)
    info = ClassifierSwap(old.num_classes, len(classes), max(1, cfg.epochs), evaluate(model, tx, ty))
    return Workbench(wb.opts, Seed(spec, model.eval())), info
