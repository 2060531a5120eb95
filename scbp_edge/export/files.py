"""Checks on model files that need no torch: the CLI's refusals and the packager use them without loading it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scbp_edge.errors import ModelFileError


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_onnx_file(path: str | Path) -> None:
    """Raise ModelFileError unless ``path`` is a loadable, valid ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors and checker errors alike
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"'{path}' is not a valid ONNX model ({first}); export one with scbp-edge derive -o x.onnx"
        ) from None
