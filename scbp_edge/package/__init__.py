"""``package``: a Docker build context that runs the chosen candidate on the robot.

The context holds the model, a Dockerfile rendered from ``docker/<runtime>.Dockerfile``
(the target's runtime, found through the registry), ``manifest.json`` (hashes,
seed, config, measured metrics, versions, and every file this command wrote)
and ``runtime/``: the serving code (``scbp_edge/serving``) plus the serving
runtime's own session (as ``runtime/session.py``) and the modules beside it.

An existing folder is only ever written into if it is empty, or if it is an
earlier context of this command and ``--force`` is given; then only the files
that the earlier manifest lists are replaced.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from scbp_edge.errors import RecordError, RunError, TargetError
from scbp_edge.export.files import sha256_file
from scbp_edge.records import CandidateRow, Report, encode
from scbp_edge.resources import data_dir
from scbp_edge.targets import Target

SERVING_DIR = Path(__file__).resolve().parents[1] / "serving"
MARKER = "scbp-edge/package-v2"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "unknown"


def _pick(report: Report, candidate: str) -> CandidateRow:
    """The row of ``candidate`` (an id, or ``best``: the run's selection), refused unless it was measured."""
    cid = report.selection.id if candidate == "best" else candidate
    if cid is None:
        raise RunError("the run selected no candidate (constraints too tight); pass --candidate ID")
    rows = [row for row in report.candidates if isinstance(row, dict)]
    for row in rows:
        if row.get("id") == cid:  # the JSON edge: only the chosen row is decoded
            try:
                c = CandidateRow.from_row(row)
            except RecordError as exc:
                raise RunError(f"candidate {cid} in report.json does not fit ({exc}); rewrite it with "
                               "scbp-edge report RUN_DIR --write") from None
            if c.status != "measured":
                raise RunError(f"candidate {cid} is {c.status} (stage {c.stage}: {c.error}); choose another")
            return c
    first = rows[0].get("id") if rows else None
    raise RunError(f"run has no candidate '{cid}'; ids are listed in report.md (e.g. {first})")


def _prepare_out(out: Path, force: bool) -> list[str]:
    """Check ``out`` may be written; returns the files an earlier context of ours wrote there (to replace)."""
    if out.exists() and not out.is_dir():
        raise RunError(f"-o '{out}' is a file, not a folder; give a new or empty folder for the build context")
    if not out.exists() or not any(out.iterdir()):
        return []
    try:
        old = json.loads((out / "manifest.json").read_text())
        ours = old["package"]["files"] if old.get("package", {}).get("format") == MARKER else None
    except (OSError, ValueError, KeyError, TypeError):
        ours = None
    if ours is None:
        raise RunError(f"-o '{out}' is not empty and is not a context written by scbp-edge package; "
                       "give a new or empty folder (nothing was written)")
    if not force:
        raise RunError(f"-o '{out}' holds an earlier package context; pass --force to replace its files "
                       "(only the ones its manifest.json lists), or give a new folder")
    return [str(f) for f in ours if isinstance(f, str)]


def _remove_listed(out: Path, files: list[str]) -> None:
    root = out.resolve()
    for rel in files:
        path = (out / rel).resolve()
        if root in path.parents and path.is_file():  # never outside the context, never a user's folder
            path.unlink()


def _runtime_files(runtime_name: str) -> dict[str, Path]:
    """runtime/<name> -> source file: the serving package plus the serving runtime's session and helpers."""
    from scbp_edge.runtimes import runtime_class

    cls = runtime_class(runtime_name)
    serving = runtime_class(cls.serves_with) if cls.serves_with else cls
    if not cls.capabilities.deployable or not serving.serve_files:
        raise TargetError(f"runtime '{runtime_name}' cannot be deployed in an image; package for a target whose "
                          "runtime is deployable (scbp-edge targets lists them)")
    files = {f"runtime/{p.name}": p for p in sorted(SERVING_DIR.glob("*.py"))}
    session, *helpers = serving.serve_files
    files["runtime/session.py"] = session
    files.update({f"runtime/{p.name}": p for p in helpers})
    return files


def _dockerfile(t: Target, base_image: str | None, precision: str) -> str:
    template = data_dir("docker") / f"{t.backend}.Dockerfile"
    if not template.is_file():
        raise TargetError(f"no Dockerfile template for runtime '{t.backend}' ({template})")
    from scbp_edge.runtimes import runtime_class

    base = base_image or t.base_image or runtime_class(t.backend).default_base_image
    if not base:
        raise TargetError(f"target '{t.name}' names no base_image and runtime '{t.backend}' has no default "
                          "(it depends on the device's release); pass --base-image IMAGE")
    text = template.read_text()
    for key, val in {"NUMPY": _version("numpy"), "ONNXRUNTIME": _version("onnxruntime"),
                     "PILLOW": _version("pillow"), "BASE_IMAGE": base, "PRECISION": precision}.items():
        text = text.replace(f"@@{key}@@", val)
    return text


def package(run_dir: Path, candidate: str, target: Target, out: Path, *, force: bool = False,
            base_image: str | None = None) -> Path:
    """Write the build context for ``candidate`` (an id or ``best``) of ``run_dir`` into ``out``."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise RunError(f"'{run_dir}' has no report.json; finish or resume the build first")
    try:
        report = Report.from_json(json.loads(report_path.read_text()))
    except ValueError:
        raise RunError(f"'{report_path}' is not valid JSON; rewrite it with scbp-edge report {run_dir} "
                       "--write") from None
    except RecordError as exc:
        raise RunError(f"'{report_path}' is not a report this version reads ({exc}); rewrite it with "
                       f"scbp-edge report {run_dir} --write") from None
    cand = _pick(report, candidate)
    files = _runtime_files(target.backend)
    trained = cand.trained.onnx if cand.trained else None
    if cand.onnx is None and trained is None:
        raise RunError(f"candidate {cand.id} has no model file in the report; write it with scbp-edge build "
                       f"--resume {run_dir}")
    model = run_dir / (trained or cand.onnx.path)  # the fine-tuned artifact of its precision, else the searched
    if not model.is_file():
        raise RunError(f"the model file of {cand.id} is missing ({model}); write it again with scbp-edge build "
                       f"--resume {run_dir}")
    precision = cand.precision or target.precisions[0]
    dockerfile = _dockerfile(target, base_image, precision)
    old = _prepare_out(out, force)  # every check above passed: only now is anything touched
    out.mkdir(parents=True, exist_ok=True)
    _remove_listed(out, old)
    written = ["model.onnx", "Dockerfile", ".dockerignore", "manifest.json", *files]
    shutil.copyfile(model, out / "model.onnx")
    for rel, src in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
    (out / "Dockerfile").write_text(dockerfile)
    manifest = {
        "package": {"format": MARKER, "files": written},
        "model": "model.onnx", "sha256": sha256_file(out / "model.onnx"), "weights": "trained" if trained else "proxy",
        "candidate": cand.id, "ratios": list(cand.ratios), "precision": precision, "seed": report.run.seed,
        "config": encode(report.run.config), "target": encode(target), "measured": encode(cand.measurement),
        "accuracy": encode(cand.accuracy), "trained": encode(cand.trained),
        "engine": {"workspace_mb": target.workspace_mb, "max_batch": max(target.batch_sizes)},
        "versions": {p: _version(p) for p in ("scbp-edge", "onnxruntime", "onnx", "numpy", "torch")},
        "dockerfile": f"{target.backend}.Dockerfile",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (out / ".dockerignore").write_text("*\n!runtime/\n!model.onnx\n!manifest.json\n")
    return out
