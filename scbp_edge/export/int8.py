"""INT8 by explicit quantization: a QDQ ONNX calibrated on training images, in the runtime's scheme.

ONNX Runtime's static quantization (``quantize_static``) inserts QuantizeLinear /
DequantizeLinear pairs with ranges calibrated on training images (never the
validation or test split), per-channel symmetric int8 weights.  Activations
follow the scheme the target's runtime runs fast, which was measured, not
guessed (benchmarks/results/precision.md):

- ``s8s8``: symmetric int8 activations (zero point 0) and float bias, the only
  form TensorRT's explicit quantization builds.  ONNX Runtime runs it too, and
  its accuracy is measured there, but its x86 kernels do not fuse it: the
  pretrained cifar-resnet56 ran 1.76 ms in s8s8 vs 1.23 ms in fp32 on this CPU.
- ``u8s8``: asymmetric uint8 activations, the form ONNX Runtime's CPU kernels
  (MLAS) fuse into integer convolutions: 0.56 ms for the same model, at the
  same accuracy.

:func:`qdq_problems` checks TensorRT's placement rules structurally, since no
TensorRT is at hand to reject a bad file.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scbp_edge.errors import ExportError

CALIBRATION = ("minmax", "entropy", "percentile")
SCHEMES = ("s8s8", "u8s8")


class _Reader:
    """ONNX Runtime's CalibrationDataReader over an (N, C, H, W) array, one image per step."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self.name, self.x, self.batch = name, x.astype(np.float32), batch
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.x) - self.batch + 1, self.batch):
            yield {self.name: self.x[i : i + self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._gen()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _no_preprocess_advice() -> Iterator[None]:
    """The quantizer logs "consider pre-processing" twice per model on the root logger, i.e. dozens of
    lines in a user's build.  Its accuracy and speed without it are measured (benchmarks/results/
    precision.md: int8 within 0.16 pt of fp32), so the advice is dropped; every other message stays."""
    root, advice = logging.getLogger(), _DropAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_int8(onnx_bytes: bytes, calib: np.ndarray, method: str = "minmax", scheme: str = "s8s8") -> bytes:
    """A QDQ int8 model of ``onnx_bytes`` calibrated on ``calib`` (normalised training images, NCHW)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION:
        raise ExportError(f"calibration '{method}' is not one of {', '.join(CALIBRATION)}")
    if scheme not in SCHEMES:
        raise ExportError(f"int8 scheme '{scheme}' is not one of {', '.join(SCHEMES)}")
    if len(calib) == 0:
        raise ExportError("no calibration images: INT8 needs training images (--data)")
    model = onnx.load_from_string(onnx_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else 1
    reader = _Reader(model.graph.input[0].name, calib, max(1, batch))
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        try:
            symmetric = scheme == "s8s8"
            with _no_preprocess_advice():
                quantize_static(
                    str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=methods[method],
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                   "QuantizeBias": not symmetric, "CalibTensorRangeSymmetric": symmetric},
                )
        except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
            raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {str(exc)[:200]}") from None
        out = dst.read_bytes()
    if scheme == "s8s8":
        problems = qdq_problems(onnx.load_from_string(out))
        if problems:
            raise ExportError("the INT8 model breaks TensorRT's explicit-quantization rules: "
                              + "; ".join(problems[:3]))
    return out


def qdq_problems(model) -> list[str]:
    """What TensorRT's explicit quantization would reject in a QDQ model (empty list: nothing).

    Rules: INT8 zero points equal to 0 (symmetric), positive finite scales,
    every QuantizeLinear consumed only by DequantizeLinear, no int32
    (bias) dequantization, per-channel scales only on a convolution weight's
    output-channel axis 0, opset >= 13 for per-channel, and at least one
    quantized convolution.
    """
    from onnx import TensorProto, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems: list[str] = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

    def const(name: str):
        t = inits.get(name) or consts.get(name)
        return None if t is None else (numpy_helper.to_array(t), t.data_type)

    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        scale = const(n.input[1])
        zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if scale is None or not np.all(np.isfinite(scale[0])) or not np.all(scale[0] > 0):
            problems.append(f"{n.name}: scale missing, non-positive or not finite")
        if zp is not None and (zp[1] != TensorProto.INT8 or np.any(zp[0] != 0)):
            problems.append(f"{n.name}: zero point is not int8 0 (TensorRT quantizes symmetrically)")
        if n.op_type == "DequantizeLinear":
            src = const(n.input[0])
            if src is not None and src[1] == TensorProto.INT32:
                problems.append(f"{n.name}: int32 (bias) dequantization, which TensorRT cannot build")
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if scale is not None and scale[0].size > 1:
            if opset < 13:
                problems.append(f"{n.name}: per-channel scales need opset >= 13 (model has {opset})")
            if axis != 0:
                problems.append(f"{n.name}: per-channel axis {axis}; TensorRT takes output channels (axis 0)")
        if n.op_type == "QuantizeLinear" and any(c.op_type != "DequantizeLinear"
                                                 for c in consumers.get(n.output[0], [])):
            problems.append(f"{n.name}: QuantizeLinear output feeds something other than DequantizeLinear")
    convs = [n for n in g.node if n.op_type == "Conv"]
    dq_out = {n.output[0] for n in qdq if n.op_type == "DequantizeLinear"}
    if convs and not any(c.input[0] in dq_out and c.input[1] in dq_out for c in convs):
        problems.append("no convolution has quantized input and weight: nothing would run in int8")
    return problems
