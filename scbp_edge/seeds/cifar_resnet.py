"""CIFAR ResNets of He et al. (2016, section 4.2) with the option-A shortcut: the ``cifar`` seed family.

The option-A shortcut (subsample, zero-pad channels) is a real module with an
index buffer instead of a lambda, so that pruning can be taught how its
channels follow (:data:`OPTION_A`, registered with the family in :data:`FAMILY`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scbp_edge.seeds.family import CustomLayer, SeedFamily

CIFAR_DEPTHS = (20, 32, 44, 56, 110)


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut: take every second pixel, place input channels.

    ``src_index[j]`` names the input channel copied to output channel ``j``, or
    ``-1`` for a zero channel.  The seed layout is ``pad`` zeros, the input
    channels, ``pad`` zeros; pruning edits the index, never the arithmetic.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        pad = (out_channels - in_channels) // 2
        index = torch.full((out_channels,), -1, dtype=torch.long)
        index[pad : pad + in_channels] = torch.arange(in_channels)
        self.in_channels = in_channels
        self.register_buffer("src_index", index)

    @property
    def out_channels(self) -> int:
        return int(self.src_index.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        # Append one zero channel so "-1" (the last position) gathers zeros.
        x = F.pad(x, (0, 0, 0, 0, 0, 1))
        gather = torch.where(self.src_index < 0, self.in_channels, self.src_index)
        return torch.index_select(x, 1, gather)


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn plus shortcut, then relu."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(in_planes, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; parameter names match akamaster's."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in CIFAR_DEPTHS:
            raise ValueError(f"depth {depth} not in {CIFAR_DEPTHS}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _prune_out(layer: OptionAShortcut, idxs: Sequence[int]) -> nn.Module:
    """Removing output channels drops their entries of the index."""
    gone = set(idxs)
    layer.src_index = layer.src_index[[i for i in range(layer.out_channels) if i not in gone]].clone()
    return layer


def _prune_in(layer: OptionAShortcut, idxs: Sequence[int]) -> nn.Module:
    """Removing input channels turns their entries into zero channels and renumbers the rest."""
    removed = torch.zeros(layer.in_channels, dtype=torch.bool)
    removed[list(idxs)] = True
    new_pos = torch.cumsum(~removed, 0) - 1
    src = layer.src_index
    ok = (src >= 0) & ~removed[src.clamp(min=0)]
    mapped = torch.full_like(src, -1)
    mapped[ok] = new_pos[src[ok]]
    layer.src_index = mapped
    layer.in_channels = int((~removed).sum())
    return layer


@torch.no_grad()
def _zero_out(layer: OptionAShortcut, idxs: list[int]) -> None:
    layer.src_index[idxs] = -1  # a padding channel: zeros


def _cost(layer: OptionAShortcut, out: int, inp: int, positions: int) -> tuple[int, int, int]:
    return 0, 0, out * layer.src_index.element_size()  # no parameters, no MACs: only its index buffer


#: the option-A shortcut's out and in channels are independent (an index, not arithmetic)
OPTION_A = CustomLayer(OptionAShortcut, lambda m: m.out_channels, lambda m: m.in_channels, _prune_out, _prune_in,
                       _zero_out, _cost)

FAMILY = SeedFamily(
    name="cifar",
    seeds=tuple(f"cifar-resnet{d}" for d in CIFAR_DEPTHS),
    num_classes=10,
    input_shape=(3, 32, 32),
    build=lambda name, classes, channels: CifarResNet(int(name.removeprefix("cifar-resnet")), classes, channels),
    custom_layers=(OPTION_A,),
)
