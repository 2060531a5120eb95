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
    _compare(model, onnx_bytes, out, name)
    return out


def _compare(model, ref_bytes: bytes, half_bytes: bytes, name: str, rel_tol: float = 0.05) -> None:
    """fp16 may round, not change the answer: relative error of the outputs on random input."""
    from scbp_edge.export.onnx import _ort_run, _parity

    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _, err = _parity(half_bytes, _ort_run(ref_bytes, x), x)
    if not np.isfinite(err) or err > rel_tol:
        raise CompileError(f"{name}: the fp16 model differs from fp32 by {err:.1%} of the output range "
                           f"(limit {rel_tol:.0%}); use --precision fp32")
