"""A third-party seed family for the tests: one small CNN with a layer only its family knows how to prune.

``Scale`` multiplies each channel by a fixed factor held in a buffer, which
Torch-Pruning neither knows nor prunes (it prunes unknown parameters, not
buffers), so without the family's rules the derived network does not run and
derive refuses it; with them, the factors follow the channels that stay.
"""

from __future__ import annotations

import torch
from torch import nn

from scbp_edge.seeds.family import CustomLayer, SeedFamily


class Scale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("factor", torch.linspace(0.5, 1.5, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor.view(1, -1, 1, 1)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), Scale(cout), nn.ReLU())


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(in_channels, 16, 1), _block(16, 32, 2), _block(32, 32, 1),
                                      _block(32, 64, 2), _block(64, 64, 1), _block(64, 64, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def tinynet(num_classes: int = 10) -> TinyNet:
    """The same network as a plain factory (``--seed scbp_tiny_family:tinynet``): no family, no Scale rules."""
    return TinyNet(num_classes)


def _keep(layer: Scale, idxs) -> Scale:
    gone = set(idxs)
    layer.factor = layer.factor[[i for i in range(layer.factor.numel()) if i not in gone]].clone()
    return layer


@torch.no_grad()
def _zero(layer: Scale, idxs: list[int]) -> None:
    layer.factor[idxs] = 0


SCALE = CustomLayer(Scale, lambda m: m.factor.numel(), lambda m: m.factor.numel(), _keep, _keep, _zero,
                    lambda m, out, inp, positions: (0, out * positions, out * 4))

FAMILY = SeedFamily(name="tiny", seeds=("tinynet",), num_classes=10, input_shape=(3, 32, 32),
                    build=lambda name, classes, channels: TinyNet(classes, channels), custom_layers=(SCALE,))
