"""The build itself: derive -> proxy -> export/quantize -> measure -> fine-tune -> rank -> report, resumable.

Everything that can be wrong with the inputs is found before a run folder
exists (:func:`scbp_edge.pipeline.prepare.prepare`).  Every candidate's progress
is then committed to the run's SQLite store as soon as it happens; a candidate
that fails is recorded with its stage and error and the build goes on;
``--resume`` redoes only what is not finished.  One process works on a run at
a time (a lock in the run folder).
"""

from __future__ import annotations

import datetime as dt
import errno
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scbp_edge import stop
from scbp_edge.errors import BuildInterrupted, RunError, ScbpError
from scbp_edge.pipeline.batches import batch_stage
from scbp_edge.pipeline.config import BuildConfig, differences, stored_config
from scbp_edge.pipeline.prepare import Prepared, adapt_classifier, prepare
from scbp_edge.pipeline.stages import derive_stage, profile_stage
from scbp_edge.pipeline.train import train_stage
from scbp_edge.records import CandidateRow, Report, RunManifest, StaticCosts, decode, encode
from scbp_edge.store import RunLock, RunStore, disk_full

__all__ = ["build", "new_run_dir"]


def new_run_dir(runs: Path, seed: str, target: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", seed.split(":")[-1])
    path = runs / f"{stamp}-{safe}-{target}"
    n = 1
    while path.exists():
        n += 1
        path = runs / f"{stamp}-{safe}-{target}-{n}"
    return path


def _make_run_dir(runs: Path, cfg: BuildConfig) -> Path:
    try:
        runs.mkdir(parents=True, exist_ok=True)
        run_dir = new_run_dir(runs, cfg.seed.seed, Path(cfg.target).stem)
        run_dir.mkdir()
    except OSError as exc:
        raise RunError(f"--runs '{runs}' cannot hold run folders ({exc.strerror}); give a writable folder") from None
    return run_dir


def _init_store(store: RunStore, cfg: BuildConfig, prep: Prepared) -> None:
    """Candidates (each network at each precision, in order), then the manifest: a run that has one can resume."""
    store.add_candidates([
        CandidateRow(f"{c.id}_{p}", 0, c.id, p, tuple(c.ratios), scopes=tuple(c.scopes), reference=c.reference,
                     static=decode(StaticCosts, {"params": c.params, "macs": c.macs, "size_bytes": c.size_bytes,
                                                 **c.extra}, f"the costs of {c.id}"))
        for c in prep.space for p in prep.precisions
    ])
    store.start(RunManifest(
        created=dt.datetime.now().isoformat(timespec="seconds"), config=cfg, target=encode(prep.target),
        runtime={"name": prep.runtime.name, "capabilities": encode(prep.runtime.capabilities)},
        precisions=tuple(prep.precisions), notes=tuple(prep.notes), seed=encode(prep.wb.seed.spec),
        segmentation=encode(prep.wb.segmentation), fingerprints=prep.fingerprints(),
        data=prep.data_counts()))


def _open_resume(resume: Path) -> tuple[Path, RunLock, RunStore, BuildConfig]:
    run_dir = Path(resume)
    if not run_dir.is_dir():
        raise RunError(f"--resume '{run_dir}' is not a folder; pass the run folder a build printed")
    if not (run_dir / "run.sqlite").exists():  # checked before the lock: a folder that is no run stays untouched
        raise RunError(f"'{run_dir}' holds no run database: it is not a run folder, or its build was stopped before "
                       "any work was saved; pass the folder a build printed, or start a new build (nothing is lost)")
    lock = RunLock(run_dir).acquire()
    try:
        store = RunStore(run_dir / "run.sqlite")
    except ScbpError:
        lock.release()
        raise
    try:
        problem = store.integrity_problem()
        saved = None if problem else store.manifest().config
    except ScbpError:  # a manifest field that does not fit its record: one line, and the run is left as it is
        store.close()
        lock.release()
        raise
    if problem or saved is None:
        store.close()
        lock.release()
        if problem:
            raise RunError(f"run database of '{run_dir}' is damaged ({problem}); 'scbp-edge report {run_dir}' shows "
                           "what can still be read; start a new build to continue")
        raise RunError(f"'{run_dir}' was stopped before any work was saved; start a new build (nothing is lost)")
    return run_dir, lock, store, stored_config(saved)


def build(cfg: BuildConfig, runs: Path = Path("runs"), resume: Path | None = None) -> Report:
    """Run (or resume) a build; returns its report (``Report.run_dir``: where it and the models are)."""
    run_dir: Path | None = None
    try:
        if resume is not None:
            run_dir, lock, store, stored = _open_resume(resume)
            try:
                if changed := differences(cfg, stored):
                    raise RunError(f"--resume replays the stored run exactly, so {', '.join(changed)} would be "
                                   f"ignored (the run has its own); drop {'it' if len(changed) == 1 else 'them'}, or "
                                   "start a new build with the new settings")
                prep = prepare(stored)
                cfg = prep.cfg
            except BaseException:
                store.close()
                lock.release()
                raise
            # A lost device or a killed worker is not the candidate's fault: measure those again.
            store.retry_failed(("profile", "compile"))
            _redo_missing(store, run_dir)
        else:
            prep = prepare(cfg)  # every input checked: only now is a folder made
            cfg = prep.cfg  # the seed's options as the target completes them
            run_dir = _make_run_dir(runs, cfg)
            lock = RunLock(run_dir).acquire()
            store = RunStore(run_dir / "run.sqlite", create=True)
            _init_store(store, cfg, prep)
        try:
            rep = _run(prep, store, run_dir, cfg)
        finally:
            store.close()
            lock.release()
    except KeyboardInterrupt:
        raise BuildInterrupted(run_dir) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC and run_dir is not None:
            raise disk_full(run_dir) from None
        raise
    except sqlite3.OperationalError as exc:  # SQLITE_FULL on a commit: the file is intact, the disk is not
        if "full" in str(exc) and run_dir is not None:
            raise disk_full(run_dir) from None
        raise
    return rep


def _redo_missing(store: RunStore, run_dir: Path) -> None:
    """Put back to work every candidate whose model file has gone from the run folder (deleted, a partial copy).

    ``package`` sends the user here when a file is missing, so resuming must write it again: a searched ONNX is
    derived, exported and measured anew; a fine-tuned one is trained again.
    """
    for r in store.rows():
        if r.onnx is not None and r.status in ("exported", "measured") and not (run_dir / r.onnx.path).is_file():
            store.update(r.id, status="pending", onnx=None, measurement=None)
        if r.trained is not None and r.trained.onnx and not (run_dir / r.trained.onnx).is_file():
            store.update(r.id, trained=None)


def _run(prep: Prepared, store: RunStore, run_dir: Path, cfg: BuildConfig) -> Report:
    from scbp_edge.executors import make_executor
    from scbp_edge.report import write_reports

    if prep.data is not None and len(prep.data.train.classes) != prep.wb.seed.spec.num_classes:
        prep.wb, info = adapt_classifier(prep.wb, prep.data, cfg, run_dir)
        store.update_progress(classifier_replaced=info)
    executor = make_executor(cfg.executor, cfg.ray_address, cfg.retries)
    with _timed(store, "derive"):
        derive_stage(prep, store, run_dir, cfg, executor)
    with _timed(store, "profile"):
        profile_stage(prep, store, cfg, run_dir)
        batch_stage(prep, store, cfg, run_dir)
    try:
        with _timed(store, "train"):
            train_stage(prep, store, run_dir, cfg, executor)
    finally:  # an interrupted training still leaves a report that says so
        rep = write_reports(run_dir, store)
    _fail_if_nothing_measured(store, run_dir)
    if rep.selection.id is None:  # a limit nothing met is a failed build, not a success without a model
        raise RunError(f"no model selected: {rep.selection.reason} (the report is in {run_dir})")
    return rep


@contextmanager
def _timed(store: RunStore, stage: str) -> Iterator[None]:
    """Add a stage's wall time to the run's ``stage_seconds`` (summed over resumes): where a build's time went."""
    start = time.perf_counter()
    try:
        yield
    finally:
        spent = dict(store.progress().stage_seconds)
        spent[stage] = round(spent.get(stage, 0.0) + time.perf_counter() - start, 3)
        store.update_progress(stage_seconds=spent)
    stop.check()  # a Ctrl-C whose KeyboardInterrupt Python swallowed still ends the build here


def _fail_if_nothing_measured(store: RunStore, run_dir: Path) -> None:
    """A build that measured nothing is not a success, even with a report (the work so far is kept)."""
    rows = store.rows()
    failed = [r for r in rows if r.status == "failed"]
    if failed and not any(r.status == "measured" for r in rows):
        r = failed[-1]
        raise RunError(f"no candidate was measured: {len(failed)} failed, e.g. {r.id} at {r.stage}: "
                       f"{r.error}; fix that and continue with scbp-edge build --resume {run_dir}")
