"""``Model(path, Session).predict(array)``: the robot-side API around one model file.

Python 3.6+, numpy (Pillow only to decode images).  The runtime-specific part
is a ``Session`` (``runtime/session.py`` in an image: ONNX Runtime or
TensorRT); this module adds preprocessing from ``manifest.json`` and scores.
"""

import json
import os

import numpy as np

from .image import MAX_PIXELS, ImageError, decode


class InputError(ValueError):
    """The request's input cannot be used (wrong shape, not an image, ...); ``status`` is the HTTP code."""

    def __init__(self, message, status=400):
        ValueError.__init__(self, message)
        self.status = status


class Model(object):
    """A classifier with its preprocessing (from manifest.json next to it, if present)."""

    def __init__(self, path, session_cls, manifest=None, threads=0, max_pixels=MAX_PIXELS):
        manifest = manifest or os.path.join(os.path.dirname(os.path.abspath(path)), "manifest.json")
        meta = {}
        if os.path.isfile(manifest):
            with open(manifest) as f:
                meta = json.load(f)
        self.meta = meta
        self.session = session_cls(path, meta, threads)
        self.input_shape = list(self.session.input_shape)
        seed = meta.get("seed", {})
        c = self.input_shape[1]
        self.mean = np.array(seed.get("mean", [0.0] * c)[:c], np.float32).reshape(1, c, 1, 1)
        self.std = np.array(seed.get("std", [1.0] * c)[:c], np.float32).reshape(1, c, 1, 1)
        self.classes = list(seed.get("class_names") or [])
        self.max_pixels = max_pixels

    @property
    def chw(self):
        return tuple(self.input_shape[1:])

    def predict(self, array):
        """Class scores for a normalised float tensor (N, C, H, W) or (C, H, W)."""
        x = np.asarray(array)
        if x.dtype.kind not in "fiu":
            raise InputError("tensor of dtype %s is not accepted; send real numbers (float32)" % x.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # 1e308 becomes inf, refused just below (no warning)
            x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError("tensor holds NaN, Inf or values outside the float32 range")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.chw or x.shape[0] < 1:
            raise InputError("input shape %s does not match (N, %s)" % (tuple(x.shape), ", ".join(map(str, self.chw))))
        fixed_batch = self.input_shape[0]
        if fixed_batch > 0 and x.shape[0] != fixed_batch:
            return np.concatenate([self.predict(x[i:i + 1]) for i in range(x.shape[0])])
        return self.session.run(x)

    def preprocess_image(self, data):
        """Decode an encoded image, resize to the model input, normalise -> (1, C, H, W)."""
        c, h, w = self.chw
        try:
            arr = decode(data, (h, w), c, self.max_pixels).astype(np.float32) / 255.0
        except ImportError:  # pragma: no cover - images need Pillow; tensors do not
            raise InputError("image input needs Pillow installed; send a raw tensor instead") from None
        except ImageError as exc:
            too_big = "exceeds" in str(exc)
            raise InputError(str(exc) if too_big else "body is %s" % exc, 413 if too_big else 400) from None
        return (arr.transpose(2, 0, 1)[None] - self.mean) / self.std

    def scores(self, logits):
        """Softmax scores, labelled with class names when known."""
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        names = self.classes if len(self.classes) == p.shape[1] else [str(i) for i in range(p.shape[1])]
        return [{"top1": names[int(row.argmax())], "index": int(row.argmax()),
                 "scores": {n: float(s) for n, s in zip(names, row)}} for row in p]
