"""Hand-written networks with the channel patterns of model-zoo CNNs (issue 30), as seed factories.

Each is small and needs no timm: a ghost module (a primary conv and a cheap
depthwise conv of its output, concatenated, then sliced to the layer's width),
a ghost module on a residual, a CSP stage (the input chunked into two paths, one runs blocks, both
concatenated), partial residuals (the shortcut added to a slice of a wider
output), and a split into three paths.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _cbr(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class Ghost(nn.Module):
    def __init__(self, cin: int, cout: int, ratio: int = 2) -> None:
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / ratio)
        self.primary = nn.Sequential(nn.Conv2d(cin, init, 1, bias=False), nn.BatchNorm2d(init), nn.ReLU())
        self.cheap = _cbr(init, init * (ratio - 1), groups=init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.primary(x)
        return torch.cat([a, self.cheap(a)], 1)[:, : self.cout]


class CSP(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.blocks = nn.Sequential(_cbr(c, c), _cbr(c, c))
        self.post = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pre(x).chunk(2, dim=1)
        return self.post(torch.cat([a, self.blocks(b)], 1))


class PartialResidual(nn.Module):
    def __init__(self, cin: int, grow: int) -> None:
        super().__init__()
        self.cin = cin
        self.body = nn.Sequential(_cbr(cin, cin), nn.Conv2d(cin, cin + grow, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cin + grow))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return torch.relu(torch.cat([out[:, : self.cin] + x, out[:, self.cin :]], 1))


class SplitThree(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.paths = nn.ModuleList([_cbr(c, c) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(p) for m, p in zip(self.paths, torch.split(x, self.c, dim=1), strict=True)], 1)


class GhostResidual(nn.Module):
    """A ghost module added to its input (GhostNet's bottleneck): the residual ties channel i to channel i + c/2."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ghost = Ghost(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ghost(x)


class GhostDown(nn.Module):
    """GhostNet's strided bottleneck: its shortcut is a depthwise conv of the full (ghost-coupled) input width."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(Ghost(cin, cin), _cbr(cin, cin, 2, groups=cin), Ghost(cin, cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                      nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class _Net(nn.Module):
    def __init__(self, body: list[nn.Module], width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


def ghostnet(num_classes: int = 10) -> nn.Module:
    return _Net([_cbr(3, 16), Ghost(16, 33), Ghost(33, 48, ratio=3), _cbr(48, 48, 2), Ghost(48, 64), _cbr(64, 64)],
                64, num_classes)


def ghostresnet(num_classes: int = 10) -> nn.Module:
    return _Net([_cbr(3, 16), _cbr(16, 32), GhostResidual(32), GhostDown(32, 48), GhostResidual(48), _cbr(48, 48)],
                48, num_classes)


def cspnet(num_classes: int = 10) -> nn.Module:
    return _Net([_cbr(3, 32), CSP(32), _cbr(64, 64, 2), CSP(64), _cbr(128, 64)], 64, num_classes)


def partialnet(num_classes: int = 10) -> nn.Module:
    return _Net([_cbr(3, 16), PartialResidual(16, 8), PartialResidual(24, 8), _cbr(32, 32, 2),
                 PartialResidual(32, 16), _cbr(48, 48)], 48, num_classes)


def splitnet(num_classes: int = 10) -> nn.Module:
    return _Net([_cbr(3, 48), SplitThree(16), _cbr(48, 48, 2), SplitThree(16), _cbr(48, 64)], 64, num_classes)
