"""``package``: a Docker build context that runs the chosen candidate on the robot.

The context holds the model's ONNX, a Dockerfile rendered from ``docker/`` for
the target's kind, ``manifest.json`` (hashes, seed, config, measured metrics,
versions) and a copy of ``scbp_edge/runtime`` (numpy + onnxruntime, no torch).
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from scbp_edge.errors import RunError, TargetError
from scbp_edge.export.onnx import sha256_file
from scbp_edge.targets import load_target

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
# Dockerfile per backend kind, and the base image each one defaults to.
KINDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("cpu.Dockerfile", "python:3.11-slim-bookworm"),
    "trtexec": ("jetson.Dockerfile", "nvcr.io/nvidia/l4t-jetpack:r35.4.1"),
    "tensorrt": ("gpu.Dockerfile", "nvcr.io/nvidia/tensorrt:24.05-py3"),
}


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "unknown"


def _pick(cands: list[dict[str, Any]], report: dict[str, Any], candidate: str) -> dict[str, Any]:
    cid = report["selection"]["id"] if candidate == "best" else candidate
    if cid is None:
        raise RunError("the run selected no candidate (constraints too tight); pass --candidate ID")
    for c in cands:
        if c["id"] == cid:
            if c["status"] != "measured":
                raise RunError(f"candidate {cid} is {c['status']} (stage {c['stage']}: {c['error']}); choose another")
            return c
    raise RunError(f"run has no candidate '{cid}'; ids are listed in report.md (e.g. {cands[0]['id']})")


def package(run_dir: Path, candidate: str, target: str, out: Path) -> Path:
    """Write the build context for ``candidate`` (an id or ``best``) of ``run_dir`` into ``out``."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise RunError(f"'{run_dir}' has no report.json; finish or resume the build first")
    report = json.loads(report_path.read_text())
    cand = _pick(report["candidates"], report, candidate)
    t = load_target(target)
    if t.backend not in KINDS:
        raise TargetError(f"no Docker template for backend '{t.backend}'; known: {', '.join(KINDS)}")
    trained = (cand.get("trained") or {}).get("onnx")
    onnx = run_dir / trained if trained else run_dir / "onnx" / f"{cand['id']}.onnx"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, out / "model.onnx")
    dst = out / "runtime"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(RUNTIME_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    template, base = KINDS[t.backend]
    text = (DOCKER_DIR / template).read_text()
    for key, val in {"NUMPY": _version("numpy"), "ONNXRUNTIME": _version("onnxruntime"),
                     "PILLOW": _version("pillow"), "BASE_IMAGE": base, "PRECISION": t.precision}.items():
        text = text.replace(f"@@{key}@@", val)
    (out / "Dockerfile").write_text(text)
    manifest = {
        "model": "model.onnx", "sha256": sha256_file(out / "model.onnx"), "weights": "trained" if trained else "proxy",
        "candidate": cand["id"], "ratios": cand["ratios"], "seed": report["run"]["seed"],
        "config": report["run"]["config"], "target": t.to_dict(), "measured": cand["measurement"],
        "accuracy": cand["accuracy"], "trained": cand.get("trained"),
        "versions": {p: _version(p) for p in ("scbp-edge", "onnxruntime", "onnx", "numpy", "torch")},
        "dockerfile": template,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (out / ".dockerignore").write_text("*\n!runtime/\n!model.onnx\n!manifest.json\n")
    return out
