"""INT8: QDQ files that TensorRT would build (checked structurally), accuracy measured on the file, QAT."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from scbp_edge.export.int8 import qdq_problems, quantize_int8
from scbp_edge.export.onnx import export_onnx


@pytest.fixture(scope="module")
def fp32_bytes(digits_bench, tmp_path_factory) -> bytes:
    wb, _, _ = digits_bench
    path = tmp_path_factory.mktemp("q") / "m.onnx"
    export_onnx(wb.seed.model, wb.seed.spec.input_shape, path)
    return path.read_bytes()


def test_tensorrt_scheme_passes_tensorrt_rules_and_the_cpu_scheme_would_not(digits_bench, fp32_bytes):
    _, (x, _), _ = digits_bench
    trt = quantize_int8(fp32_bytes, x[:64].numpy(), "minmax", "s8s8")
    assert qdq_problems(onnx.load_from_string(trt)) == []
    cpu = quantize_int8(fp32_bytes, x[:64].numpy(), "minmax", "u8s8")
    problems = qdq_problems(onnx.load_from_string(cpu))
    assert any("zero point is not int8 0" in p for p in problems)
    assert any("int32 (bias)" in p for p in problems)


def test_unquantized_model_is_caught(fp32_bytes):
    assert any("nothing would run in int8" in p for p in qdq_problems(onnx.load_from_string(fp32_bytes)))


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_accuracy_is_measured_on_the_file_and_close_to_fp32(digits_bench, fp32_bytes, method):
    from scbp_edge.accuracy import evaluate, evaluate_onnx

    wb, (x, _), (tx, ty) = digits_bench
    q = quantize_int8(fp32_bytes, x[:128].numpy(), method, "u8s8")
    int8_acc, fp32_acc = evaluate_onnx(q, tx, ty), evaluate(wb.seed.model, tx, ty)
    assert abs(int8_acc - fp32_acc) <= 1.5, (method, int8_acc, fp32_acc)
    assert abs(evaluate_onnx(fp32_bytes, tx, ty) - fp32_acc) < 0.5  # the ONNX evaluation is the model's own


def test_qat_runs_when_post_training_quantization_loses_too_much(digits_bench):
    from scbp_edge.records.task import TrainContext, TrainData, TrainJob
    from scbp_edge.tasks import seed_payload, train_network

    wb, (x, y), (tx, ty) = digits_bench
    train = TrainData(x[:512], y[:512], tx, ty, x[:64])
    job = TrainJob("half", (0.5, 0.5, 0.5), ("fp32", "int8"))
    res = train_network(job, TrainContext(seed_payload(wb), train, epochs=1, lr=0.02, init="inherit", distill=False,
                        int8={"calibration": "minmax", "scheme": "u8s8"},
                        qat_epochs=1, qat_threshold=-100.0))  # any loss at all triggers it here
    v = res.per_precision["int8"]
    q = v.accuracy
    assert v.failure is None and q.qat["ok"] and q.qat["epochs"] == 1
    assert q.value == max(q.ptq_value, q.qat["test_accuracy"]), "the better int8 model is kept"
    assert q.ptq_value is not None and v.artifact[:4]  # an artifact ships with its figure


def test_fake_quant_wrappers_leave_a_plain_model(digits_bench):
    from scbp_edge.accuracy.qat import _swap

    wb, _, _ = digits_bench
    _, model = wb.candidate([0.5, 0.5, 0.5])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _swap(model, wrap=True)
    assert any(type(m).__name__ == "_FakeQuant" for m in model.modules())
    _swap(model, wrap=False)
    assert not any(type(m).__name__ == "_FakeQuant" for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(model(torch.zeros(1, 1, 16, 16)).detach().numpy()).all()


def test_the_quantizers_preprocessing_advice_is_not_printed_but_other_warnings_are(digits_bench, fp32_bytes, caplog):
    import logging

    _, (x, _), _ = digits_bench
    with caplog.at_level(logging.WARNING):
        quantize_int8(fp32_bytes, x[:16].numpy(), "minmax", "u8s8")
        logging.warning("something else")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("pre-processing" in m for m in messages) and "something else" in messages
