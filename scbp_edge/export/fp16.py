"""fp16 ONNX for strongly typed TensorRT (11.x removed the --fp16 / BuilderFlag.FP16 switch).

Weights and activations become float16 (onnxconverter-common, imported
lazily); inputs and outputs stay float32 so callers feed the same tensors.
"""

from __future__ import annotations

import warnings

import numpy as np

from scbp_edge.errors import CompileError


def to_fp16(onnx_bytes: bytes, name: str) -> bytes:
    """The model with float16 weights and compute, float32 I/O; checked by ONNX and compared on ORT."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise CompileError(f"{name}: TensorRT 11+ builds fp16 only from an fp16 ONNX; pip install "
                           "onnxconverter-common (in 'scbp-edge[tensorrt]') or use --precision fp32") from None
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    with warnings.catch_warnings():  # weights below fp16's range are clamped; the comparison below judges it
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(half)
    out = half.SerializeToString()
    _compare(onnx_bytes, out, name)
    return out


def _compare(ref_bytes: bytes, half_bytes: bytes, name: str, rel_tol: float = 0.05) -> None:
    """fp16 may round, not change the answer: relative error of the outputs on random input."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (ref_bytes, half_bytes)]
    inp = sessions[0].get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref, got = (s.run(None, {inp.name: x})[0] for s in sessions)
    err = float(np.abs(ref - got).max() / (np.abs(ref).max() + 1e-6))
    if not np.isfinite(err) or err > rel_tol:
        raise CompileError(f"{name}: the fp16 model differs from fp32 by {err:.1%} of the output range "
                           f"(limit {rel_tol:.0%}); use --precision fp32")
