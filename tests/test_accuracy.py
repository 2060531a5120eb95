"""Accuracy: adaptive BN changes statistics, not weights; the proxy beats stale statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scbp_edge.accuracy import adapt_bn, evaluate
from scbp_edge.api import SeedOptions, Workbench


def test_adapt_bn_changes_stats_not_weights():
    wb = Workbench(SeedOptions("cifar-resnet20"))
    _, model = wb.candidate([0.5, 0.5, 0.5])
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    adapt_bn(model, torch.randn(64, 3, 32, 32) * 3 + 1)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())
    assert any(not torch.equal(v, after[k]) for k, v in stats.items())
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.slow
def test_proxy_beats_stale_bn_on_shared_resnet20(shared, cifar_test):
    from scbp_edge.data import read_split

    ckpt = shared / "seeds/cifar10-resnet/resnet20-12fca82f.th"
    wb = Workbench(SeedOptions("cifar-resnet20", str(ckpt)))
    _, model = wb.candidate([0.5, 0.5, 0.5])
    train = read_split(shared / "data/cifar10-jpeg/train.tar.gz", (32, 32))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:512].numpy()
    bn_x, _ = train.subset(pick).tensors(wb.seed.spec.mean, wb.seed.spec.std)
    val = cifar_test.subset(slice(0, 2000))
    x, y = val.tensors(wb.seed.spec.mean, wb.seed.spec.std)
    stale = evaluate(model, x, y)
    adapt_bn(model, bn_x)
    assert evaluate(model, x, y) > stale + 5


@pytest.fixture(scope="module")
def cifar_data(shared):
    """The build's own data path on the shared CIFAR-10-JPEG: 5,000-image validation split carved from train."""
    from scbp_edge.pipeline.config import BuildConfig
    from scbp_edge.pipeline.prepare import load_data

    wb = Workbench(SeedOptions("cifar-resnet20"))
    return load_data(BuildConfig(data=str(shared / "data/cifar10-jpeg")), wb)


@pytest.mark.slow
@pytest.mark.parametrize("depth,ckpt", [(20, "resnet20-12fca82f.th"), (56, "resnet56-4bfd9763.th")])
def test_proxy_does_not_underrate_a_pretrained_seed(shared, cifar_data, depth, ckpt):
    """Issue 21: the unpruned seed scored 67.18 by the proxy vs 88.68 with its own BN statistics."""
    from scbp_edge.tasks import proxy_accuracy

    wb = Workbench(SeedOptions(f"cifar-resnet{depth}", str(shared / "seeds/cifar10-resnet" / ckpt)))
    _, model = wb.candidate([0.0, 0.0, 0.0])
    acc = proxy_accuracy(model, cifar_data.proxy(), 1, 1)
    assert len(cifar_data.val_y) == 5000
    assert acc.value >= acc.stale_bn - 1.0, acc
    # The re-estimation itself is sound (shuffled, shift-augmented): within 3 pt of the inherited statistics.
    # Measured: ResNet-56 +0.0 pt, ResNet-20 -2 pt on this validation split, which holds training images the
    # seeds memorized with their own statistics; on the test split the gap is 0.4 pt for both.
    assert acc.adapted_bn >= acc.stale_bn - 3.0, acc
    _, pruned = wb.candidate([0.5, 0.5, 0.5])
    p = proxy_accuracy(pruned, cifar_data.proxy(), 1, 1)
    assert p.bn == "re-estimated" and p.adapted_bn > p.stale_bn + 5, p


def test_bn_reestimation_is_blind_to_class_order():
    """A class-sorted sample must give the statistics of a shuffled one (per-batch variances are averaged)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    x = torch.cat([torch.randn(64, 1, 8, 8) + c * 3 for c in range(4)])  # four "classes", sorted
    a = adapt_bn(model, x)[1].running_var.clone()
    b = adapt_bn(model, x[torch.randperm(len(x))])[1].running_var.clone()
    assert torch.allclose(a, b, rtol=0.1)


def test_one_epoch_finetune_improves_heavily_pruned(digits_bench):
    from scbp_edge.accuracy import train

    wb, (x, y), (tx, ty) = digits_bench
    _, model = wb.candidate([0.75, 0.75, 0.75])
    before = evaluate(model, tx, ty)
    torch.manual_seed(0)
    train(model, x[:600], y[:600], epochs=1, lr=0.02)
    assert evaluate(model, tx, ty) > before + 5


def test_distill_and_scratch_paths_run(digits_bench):
    from scbp_edge.accuracy import train

    wb, (x, y), (tx, ty) = digits_bench
    _, model = wb.candidate([0.5, 0.5, 0.5])
    w0 = next(model.parameters()).clone()
    train(model, x[:128], y[:128], epochs=1, teacher=wb.seed.model)
    assert not torch.equal(w0, next(model.parameters()))
    _, scratch = wb.candidate([0.5, 0.5, 0.5])
    for m in scratch.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    train(scratch, x[:128], y[:128], epochs=1)
    assert 0.0 <= evaluate(scratch, tx, ty) <= 100.0


def test_distillation_teaches_pruned_networks_but_never_the_seed_itself(digits_bench):
    # On by default: it gave cifar-resnet20's 1.5x network +1.6 pt, and cost the seed reference 2.2 pt when the
    # seed was "distilled" from itself (benchmarks/results/scbp_vs_peers.md).
    from scbp_edge.pipeline.config import BuildConfig
    from scbp_edge.records.task import TrainContext, TrainData, TrainJob
    from scbp_edge.tasks import seed_payload, train_network

    assert BuildConfig().distill
    wb, (x, y), (tx, ty) = digits_bench
    train = TrainData(x[:256], y[:256], tx, ty, x[:32])
    states = {}
    for ratios in ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)):
        for distill in (False, True):
            ctx = TrainContext(seed_payload(wb), train, epochs=1, lr=0.02, init="inherit", distill=distill, int8={})
            res = train_network(TrainJob("n", ratios, ("fp32",)), ctx)
            states[ratios, distill] = res.weights.state

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(states[(0.0, 0.0, 0.0), False], states[(0.0, 0.0, 0.0), True])
    assert not same(states[(0.5, 0.5, 0.5), False], states[(0.5, 0.5, 0.5), True])


def test_seed_reference_is_put_back_as_it_came_when_its_fine_tune_scores_lower(digits_bench):
    """Issue 36 item 5: a fine-tune that ruins the seed (an absurd learning rate) is not what the user ships."""
    from scbp_edge.records.task import TrainContext, TrainData, TrainJob
    from scbp_edge.tasks import seed_payload, train_network

    wb, (x, y), (tx, ty) = digits_bench
    train = TrainData(x[:256], y[:256], tx, ty, x[:32], x[-300:], y[-300:])
    seed = {k: v.clone() for k, v in wb.seed.model.state_dict().items()}
    unpruned, half = TrainJob("seed", (0.0, 0.0, 0.0), ("fp32",)), TrainJob("half", (0.5, 0.5, 0.5), ("fp32",))
    ruined = train_network(unpruned, TrainContext(seed_payload(wb), train, epochs=1, lr=50.0, init="inherit",
                                                  distill=False, int8={}))
    v = ruined.validation  # the seed reference's judgement is a field of the result (issue 59), not a stats key
    assert v["kept"] == "as it came" and v["as it came"] > v["fine-tuned"] and v["images"] == 300
    assert ruined.test_accuracy == ruined.test_accuracy_before
    assert all(torch.equal(ruined.weights.state[k], seed[k]) for k in seed)
    tuned = train_network(unpruned, TrainContext(seed_payload(wb), train, epochs=1, lr=1e-4, init="inherit",
                                                 distill=False, int8={}))
    t = tuned.validation
    assert t["kept"] == ("as it came" if t["as it came"] > t["fine-tuned"] else "fine-tuned")
    pruned = train_network(half, TrainContext(seed_payload(wb), train, epochs=1, lr=0.02, init="inherit", distill=False,
                                              int8={}))
    assert pruned.validation is None  # pruned networks are not judged against their untrained selves
    assert pruned.stats.steps == 4 and pruned.stats.epochs == 1.0  # 256 images in batches of 64, one epoch


def test_warm_up_rises_linearly_then_cosine_falls_to_zero():
    from scbp_edge.accuracy import lr_factor

    total = 100  # 5 % warm-up: the first 5 steps rise 0.2, 0.4, ... 1.0, then cosine from the peak
    assert [round(lr_factor(s, total, 0.05), 6) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert lr_factor(5, total, 0.05) == pytest.approx(1.0)
    falls = [lr_factor(s, total, 0.05) for s in range(5, total + 1)]
    assert all(a >= b for a, b in zip(falls, falls[1:])) and falls[-1] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, total, 0.0) == pytest.approx(1.0)  # no warm-up: plain cosine from the first step


def test_flips_only_when_asked():
    from scbp_edge.accuracy import _augment

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4).repeat(32, 1, 1, 1)
    plain = _augment(x, torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(plain, x)  # no shift room, no flips: the images as they were
    flipped = _augment(x, torch.Generator().manual_seed(0), pad=0, flip=True)
    mirrored = [bool(torch.equal(f, o.flip(2))) for f, o in zip(flipped, x)]
    kept = [bool(torch.equal(f, o)) for f, o in zip(flipped, x)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image either mirrored or untouched
    assert 8 < sum(mirrored) < 56  # about half of 64 are mirrored


def test_step_seconds_times_a_copy_and_counts_the_teacher():
    """The measured step leaves the network's weights as they were; a teacher's forward pass adds time."""
    import copy

    from scbp_edge.accuracy import step_seconds

    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10))
    big = nn.Sequential(nn.Conv2d(3, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    before = copy.deepcopy(small.state_dict())
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    alone = step_seconds(small, x, y, steps=3)
    taught = step_seconds(small, x, y, teacher=big, steps=3)
    assert all(torch.equal(v, small.state_dict()[k]) for k, v in before.items())
    assert 0 < alone < taught  # the teacher has ~1,000x the MACs: its forward pass cannot hide in the noise
