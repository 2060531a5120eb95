"""The few-shot refinement after the solve (derive/refine.py): real images, a real seed, the product's own path."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from scbp_edge.derive import refine as refine_module
from scbp_edge.derive.reconstruct import Reconstruction
from scbp_edge.records import decode, encode

RATIOS = 0.75  # every segment: a network with something to recover


@pytest.fixture(scope="module")
def bench(digits_bench):
    """The embedded default seed (trained on digits), calibrated on 128 training images; 96 test images held out."""
    wb, (x, y), (tx, _) = digits_bench
    x, y, held = x[:128], y[:128], tx[:96]
    wb.calibrate(x, y)
    _, solved, _ = wb.derive([RATIOS] * wb.num_segments)
    return wb, x, held, solved


def _distance(model: torch.nn.Module, seed: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(refine_module._loss(model.eval()(x), seed.eval()(x)))


def test_refinement_brings_the_network_closer_to_the_seed_on_images_it_never_saw(bench):
    wb, x, held, solved = bench
    model = copy.deepcopy(solved)
    norms = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    got = refine_module.refine(model, wb.seed.model, x)  # the default steps and step size
    assert got is not None and got.kept and got.loss_after < got.loss_before
    assert _distance(model, wb.seed.model, held) < 0.9 * _distance(solved, wb.seed.model, held)
    with torch.no_grad():  # and it agrees with the seed's top-1 on them at least as often
        top = wb.seed.model(held).argmax(1)
        agree = [float((m.eval()(held).argmax(1) == top).float().mean()) for m in (model, solved)]
    assert agree[0] >= agree[1]
    state = model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in solved.state_dict().items()}
    assert all(torch.equal(state[k], v) for k, v in norms.items())  # BatchNorm statistics stay frozen


def test_a_refinement_that_does_not_help_on_held_out_images_gives_the_solved_weights_back(bench):
    wb, x, _, solved = bench
    model = copy.deepcopy(solved)
    got = refine_module.refine(model, wb.seed.model, x, steps=5, lr=50.0)  # a step size that wrecks the network
    assert got is not None and not got.kept
    assert got.loss_after is None or got.loss_after > refine_module.MAX_RISE * got.loss_before
    assert all(torch.equal(v, solved.state_dict()[k]) for k, v in model.state_dict().items())


def test_too_few_images_to_hold_any_out_is_no_refinement(bench):
    wb, x, _, solved = bench
    model = copy.deepcopy(solved)
    assert refine_module.refine(model, wb.seed.model, x[:3], steps=5) is None
    assert all(torch.equal(v, solved.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_time_bound_too_short_for_five_steps_takes_none_and_says_so(bench):
    wb, x, _, solved = bench
    model = copy.deepcopy(solved)
    got = refine_module.refine(model, wb.seed.model, x, seconds=1e-3)
    assert got is not None and got.steps == 0 and not got.kept
    assert all(torch.equal(v, solved.state_dict()[k]) for k, v in model.state_dict().items())


def test_calibrate_with_refine_steps_records_the_refinement_with_the_candidate(bench):
    wb, x, held, solved = bench
    wb.calibrate(x, refine_steps=refine_module.STEPS)
    try:
        cand, model = wb.candidate([RATIOS] * wb.num_segments)
    finally:
        wb.calibrate(x)
    rec = decode(Reconstruction, cand.extra["reconstruction"])
    assert rec.applied and rec.refined is not None and rec.refined.steps == refine_module.STEPS and rec.refined.kept
    assert decode(Reconstruction, encode(rec)) == rec
    assert any(not torch.equal(v, solved.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_fine_tunes_start_is_refined_within_its_time_and_the_result_says_so(digits_bench):
    """--refine-seconds: the pruned network is refined before its fine-tune, paid from its training seconds; the
    unpruned seed is not (nothing to recover)."""
    from scbp_edge.records.task import Calibration, TrainContext, TrainData, TrainJob
    from scbp_edge.tasks import seed_payload, train_network

    wb, (x, y), (tx, ty) = digits_bench
    train = TrainData(x[:256], y[:256], tx, ty, x[:32])
    payload = seed_payload(wb, Calibration(x[:128], y[:128]))
    # under a time share the fine-tune trains until it is spent: the refinement's seconds must come out of it
    ctx = TrainContext(payload, train, epochs=50, lr=0.02, init="inherit", distill=True, int8={}, refine_seconds=60)
    pruned = train_network(TrainJob("half", (RATIOS,) * wb.num_segments, ("fp32",), 8.0), ctx)
    ref = pruned.reconstruction.refined
    assert ref is not None and ref.steps > 0 and ref.seconds <= 8.0 / 4 + 0.5  # a quarter of its share at most
    assert pruned.stats is not None and pruned.stats.seconds + ref.seconds <= 8.0 + 1.0  # an epoch's overshoot
    seed = train_network(TrainJob("seed", (0.0,) * wb.num_segments, ("fp32",), 2.0), ctx)
    assert seed.reconstruction.refined is None
    off = train_network(TrainJob("half", (RATIOS,) * wb.num_segments, ("fp32",), 2.0), replace(ctx, refine_seconds=0))
    assert off.reconstruction.refined is None
