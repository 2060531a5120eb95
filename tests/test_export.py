"""Export: ONNX parity for every built-in seed, checker, slim, dynamic batch, bad files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.errors import ExportError, ModelFileError
from scbp_edge.export.files import check_onnx_file
from scbp_edge.export.onnx import export_onnx

SEEDS = [("cifar-resnet20", None), ("cifar-resnet56", None), ("cifar-resnet110", None), ("resnet18", 64),
         ("resnet34", 64), ("resnet50", 64), ("resnet101", 64), ("resnet152", 64), ("mobilenet_v2", 64)]


@pytest.mark.parametrize(("name", "size"), SEEDS, ids=[s for s, _ in SEEDS])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_export_parity_for_builtin_seeds(tmp_path, name, size):
    wb = Workbench(SeedOptions(name, input_size=size))
    n = wb.num_segments  # mixed scopes (issue 56): stream and inner segments in one network
    _, model = wb.candidate([0.5] * n, scopes=["inner" if i % 2 else "stream" for i in range(n)])
    info = export_onnx(model, wb.seed.spec.input_shape, tmp_path / "m.onnx")
    proto = onnx.load(info.path)
    assert proto.opset_import[0].version >= 17
    assert info.rel_diff <= 1e-3
    sess = ort.InferenceSession(info.path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, *wb.seed.spec.input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())


def test_dynamic_batch(tmp_path):
    wb = Workbench(SeedOptions("cifar-resnet20"))
    _, model = wb.candidate([0.25, 0.5, 0.5])
    info = export_onnx(model, (3, 32, 32), tmp_path / "d.onnx", dynamic_batch=True)
    sess = ort.InferenceSession(info.path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0]
    assert out.shape == (5, 10)


def test_unfaithful_export_fails_with_clear_message(tmp_path):
    class Noisy(torch.nn.Module):  # differs between calls: PyTorch and ORT can never agree
        def forward(self, x):
            return x.mean((2, 3)) + torch.rand(x.shape[0], 3) * 100

    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(Noisy(), (3, 8, 8), tmp_path / "n.onnx", slim=False)


def test_not_onnx_is_rejected(tmp_path):
    (tmp_path / "fake.onnx").write_bytes(b"\x00garbage that is not protobuf at all")
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        check_onnx_file(tmp_path / "fake.onnx")
    with pytest.raises(ModelFileError, match="does not exist"):
        check_onnx_file(tmp_path / "missing.onnx")
