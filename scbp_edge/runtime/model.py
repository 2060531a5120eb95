"""``Model(path).predict(array)``: the robot-side API around one ONNX file."""

from __future__ import annotations

import io
import json
import os
import threading
from typing import Any

import numpy as np


class InputError(ValueError):
    """The request's input cannot be used (wrong shape, not an image, ...)."""


class Model:
    """An ONNX classifier with its preprocessing (from manifest.json next to it, if present)."""

    def __init__(self, path: str, manifest: str | None = None, threads: int = 0) -> None:
        self.input_shape = self._open(path, threads)
        manifest = manifest or os.path.join(os.path.dirname(os.path.abspath(path)), "manifest.json")
        meta: dict[str, Any] = {}
        if os.path.isfile(manifest):
            with open(manifest) as f:
                meta = json.load(f)
        seed = meta.get("seed", {})
        c = self.input_shape[1]
        self.mean = np.array(seed.get("mean", [0.0] * c)[:c], np.float32).reshape(1, c, 1, 1)
        self.std = np.array(seed.get("std", [1.0] * c)[:c], np.float32).reshape(1, c, 1, 1)
        self.classes = list(seed.get("class_names") or [])
        self._lock = threading.Lock()

    def _open(self, path: str, threads: int) -> list[int]:
        """Load the runtime; returns the input shape (-1 for a dynamic axis)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        return [d if isinstance(d, int) else -1 for d in inp.shape]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    @property
    def chw(self) -> tuple[int, int, int]:
        return tuple(self.input_shape[1:])  # type: ignore[return-value]

    def predict(self, array: np.ndarray) -> np.ndarray:
        """Class scores for a normalised float tensor (N, C, H, W) or (C, H, W)."""
        x = np.asarray(array, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.chw:
            raise InputError(f"input shape {tuple(x.shape)} does not match (N, {', '.join(map(str, self.chw))})")
        fixed_batch = self.input_shape[0]
        if fixed_batch > 0 and x.shape[0] != fixed_batch:
            return np.concatenate([self.predict(x[i : i + 1]) for i in range(x.shape[0])])
        return self._run(x)

    def preprocess_image(self, data: bytes) -> np.ndarray:
        """Decode an encoded image, resize to the model input, normalise -> (1, C, H, W)."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - images need Pillow; tensors do not
            raise InputError("image input needs Pillow installed; send a raw tensor instead") from exc
        c, h, w = self.chw
        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - any decode failure is the client's input
            raise InputError(f"body is not a decodable image ({type(exc).__name__})") from None
        arr = arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None]
        return (arr - self.mean) / self.std

    def scores(self, logits: np.ndarray) -> list[dict[str, Any]]:
        """Softmax scores, labelled with class names when known."""
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        names = self.classes if len(self.classes) == p.shape[1] else [str(i) for i in range(p.shape[1])]
        return [{"top1": names[int(row.argmax())], "index": int(row.argmax()),
                 "scores": {n: float(s) for n, s in zip(names, row)}} for row in p]
