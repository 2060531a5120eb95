"""Residual writers: found in the traced graph, and solved against the seed's block output."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from scbp_edge.accuracy import adapt_bn
from scbp_edge.api import SeedOptions, Workbench
from scbp_edge.data import load_dataset
from scbp_edge.derive.reconstruct import SeedTargets, reconstruct
from scbp_edge.derive.residual import find_writers, trace_graph
from scbp_edge.seeds import load_seed


def _images(n: int, size: int, offset: int = 0) -> torch.Tensor:
    """Real images (scikit-learn's digits), 3 channels, normalised roughly."""
    train, _ = load_dataset("digits", (size, size), 3)
    x, _ = train.subset(np.arange(offset, offset + n)).tensors((0.5,) * 3, (0.25,) * 3)
    return x


def test_cifar_resnet_writers_are_every_blocks_last_conv_with_the_padding_shortcut_applied_again():
    model = load_seed("cifar-resnet20", None).model
    writers = find_writers(model, torch.randn(1, 3, 32, 32))
    blocks = [n for n, m in model.named_modules() if hasattr(m, "shortcut")]
    assert set(writers) == {f"{b}.conv2" for b in blocks} and len(blocks) == 9
    for b in blocks:
        w = writers[f"{b}.conv2"]
        assert w.norm == f"{b}.bn2"
        padded = not isinstance(dict(model.named_modules())[f"{b}.shortcut"], nn.Identity)
        assert (w.via == f"{b}.shortcut") == padded  # option A runs after conv2: read from its input, applied again


def test_torchvision_resnet18_writers_are_conv2_or_the_downsample_conv_that_runs_last():
    model = torchvision.models.resnet18()
    writers = find_writers(model, torch.randn(1, 3, 64, 64))
    want = {f"{n}.downsample.0" if m.downsample is not None else f"{n}.conv2"
            for n, m in model.named_modules() if isinstance(m, torchvision.models.resnet.BasicBlock)}
    assert set(writers) == want and len(want) == 8
    assert writers["layer2.0.downsample.0"].shortcut == "layer2.0.bn2"  # the other branch, made before it


def test_mobilenet_v2_writers_are_the_projections_of_inverted_residuals_only():
    model = torchvision.models.mobilenet_v2()
    writers = find_writers(model, torch.randn(1, 3, 64, 64))
    from torchvision.models.mobilenetv2 import InvertedResidual

    want = set()
    for n, m in model.named_modules():
        if isinstance(m, InvertedResidual) and m.use_res_connect:
            convs = [c for c, mm in m.conv.named_modules() if isinstance(mm, nn.Conv2d)]
            want.add(f"{n}.conv.{convs[-1]}")
    assert set(writers) == want and len(want) == 10


def test_a_network_with_no_residual_add_has_no_writers():
    assert find_writers(torchvision.models.vgg11(), torch.randn(1, 3, 32, 32)) == {}


def test_relu_gated_convs_are_those_whose_norm_feeds_only_a_relu():
    """Issue 55: the ReLU-aware re-solve applies where conv -> BatchNorm -> ReLU, found in the graph, not by name:
    a CIFAR ResNet's stem and every block's conv1 (a functional ReLU), torchvision's too (one ReLU module
    called twice); not a block's conv2 (its norm feeds the add), nor MobileNetV2's (ReLU6 also clips above)."""
    model = load_seed("cifar-resnet20", None).model
    blocks = [n for n, m in model.named_modules() if hasattr(m, "shortcut")]
    assert trace_graph(model, torch.randn(1, 3, 32, 32))[2] == {"conv1"} | {f"{b}.conv1" for b in blocks}
    tv = torchvision.models.resnet18()
    basic = torchvision.models.resnet.BasicBlock
    want = {"conv1"} | {f"{n}.conv1" for n, m in tv.named_modules() if isinstance(m, basic)}
    assert trace_graph(tv, torch.randn(1, 3, 64, 64))[2] == want
    assert trace_graph(torchvision.models.mobilenet_v2(), torch.randn(1, 3, 64, 64))[2] == set()


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class _TwoBlocks(nn.Module):
    def __init__(self, c: int = 12) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.block1, self.block2 = _Block(c), _Block(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block2(self.block1(self.stem(x))).mean((2, 3)))


def _block_outputs(model: nn.Module, x: torch.Tensor, after_bn1: bool = False) -> dict[str, torch.Tensor]:
    """Each block's output, or (``after_bn1``) what comes out of the ReLU after its first BatchNorm."""
    outs: dict[str, torch.Tensor] = {}
    mods = {b: getattr(model, b).bn1 if after_bn1 else getattr(model, b) for b in ("block1", "block2")}
    hooks = [m.register_forward_hook(lambda _m, _i, o, b=b: outs.__setitem__(b, torch.relu(o) if after_bn1 else o))
             for b, m in mods.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return outs


def _seed_and_drifted() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """The two-block seed on real images, a copy whose stream drifts before the blocks (its stem perturbed and
    left so), calibration images and held-out ones."""
    torch.manual_seed(0)
    seed = _TwoBlocks()
    x, held = _images(160, 16), _images(64, 16, offset=200)
    adapt_bn(seed, x)
    drifted = copy.deepcopy(seed)
    with torch.no_grad():
        drifted.stem[0].weight.add_(0.4 * drifted.stem[0].weight.std() * torch.randn_like(drifted.stem[0].weight))
    return seed, drifted, x, held


def test_the_block_output_solve_predicts_held_out_block_outputs_better_when_the_shortcut_drifted():
    seed, drifted, x, held = _seed_and_drifted()
    skip = ("stem.0", "fc")
    plain, block = copy.deepcopy(drifted), copy.deepcopy(drifted)
    rec_plain = reconstruct(plain, SeedTargets(seed, x), {}, skip=skip)
    rec_block = reconstruct(block, SeedTargets(seed, x, residual=True), {}, skip=skip)
    assert rec_plain.residual == () and set(rec_block.residual) == {"block1.conv2", "block2.conv2"}
    ref = _block_outputs(seed, held)
    err = {name: {b: float((o - ref[b]).norm() / ref[b].norm()) for b, o in _block_outputs(m, held).items()}
           for name, m in (("drifted", drifted), ("plain", plain), ("block", block))}
    for b in ("block1", "block2"):
        assert err["block"][b] < err["plain"][b] < err["drifted"][b] * 1.05, err


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    wb = Workbench(SeedOptions("cifar-resnet20"))
    x = _images(96, 32)
    adapt_bn(wb.seed.model, x)
    return wb, x


def test_block_output_solve_changes_only_weights_and_the_onnx_matches(resnet20, tmp_path):
    import onnxruntime as ort

    from scbp_edge.export.onnx import export_onnx

    wb, x = resnet20
    ratios = [0.5, 0.5, 0.25]
    l1 = wb.deriver.derive(ratios)  # checked against the masked seed inside
    wb.calibrate(x)  # on by default (benchmarks/results/reconstruct_tuned_cifar-resnet*.md)
    cand, model = wb.candidate(ratios)
    rec = cand.extra["reconstruction"]
    assert rec["applied"] and len(rec["residual"]) == 9
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in l1.state_dict().items()}
    path = tmp_path / "m.onnx"
    export_onnx(model, wb.seed.spec.input_shape, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(x[:1]).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x[:1].numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-3 * max(1.0, float(np.abs(ref).max()))
    wb.calibrate(x, residual=False)  # --no-residual-solve: no writer is solved against the sum
    assert wb.candidate(ratios)[0].extra["reconstruction"]["residual"] == []


def test_the_relu_aware_solve_predicts_held_out_activations_after_the_relu_better(monkeypatch):
    """Issue 55: below the ReLU's cut any value is the same value; released there, the fit spends its unknowns on
    the rows that pass, and what comes out of each ReLU comes closer to the seed's on images it never saw: after a
    block's first conv (its norm's ReLU) and after the block (the ReLU of the add its writer solves against)."""
    import scbp_edge.derive.reconstruct as rc

    seed, drifted, x, held = _seed_and_drifted()
    inner, outer = _block_outputs(seed, held, after_bn1=True), _block_outputs(seed, held)
    err = {}
    for relax in (0, rc.RELU_RELAX):
        monkeypatch.setattr(rc, "RELU_RELAX", relax)
        model = copy.deepcopy(drifted)
        reconstruct(model, SeedTargets(seed, x, residual=True), {}, skip=("stem.0", "fc"))
        inside = _block_outputs(model, held, after_bn1=True)
        got = {**{f"{b}.conv1": o for b, o in inside.items()}, **_block_outputs(model, held)}
        ref = {**{f"{b}.conv1": o for b, o in inner.items()}, **outer}
        err[relax] = {k: float((o - ref[k]).norm() / ref[k].norm()) for k, o in got.items()}
    assert rc.RELU_RELAX > 0 and len(err[0]) == 4
    for k in err[0]:
        assert err[rc.RELU_RELAX][k] < err[0][k], err
