"""fp16 ONNX for strongly typed TensorRT (export/fp16.py), checked on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.export.fp16 import to_fp16
from scbp_edge.export.onnx import export_onnx


def test_fp16_model_keeps_float32_io_and_the_answer(tmp_path):
    wb = Workbench(SeedOptions("cifar-resnet20"))
    _, model = wb.candidate([0.5, 0.25, 0.0])
    export_onnx(model, (3, 32, 32), tmp_path / "m.onnx")
    ref_bytes = (tmp_path / "m.onnx").read_bytes()
    half = onnx.load_from_string(to_fp16(ref_bytes, "m.onnx"))
    f16 = onnx.TensorProto.FLOAT16
    kinds = {i.data_type for i in half.graph.initializer}
    assert f16 in kinds and onnx.TensorProto.FLOAT not in kinds  # every float weight is fp16 now
    assert {v.type.tensor_type.elem_type for v in [*half.graph.input, *half.graph.output]} == {onnx.TensorProto.FLOAT}
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(ref_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.float32 and np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    assert len(half.SerializeToString()) < 0.6 * len(ref_bytes)
