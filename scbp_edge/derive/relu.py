"""The ReLU-aware re-solve: below a ReLU's cut any value is the same value.

A layer fitted to the seed's output in least squares spends its unknowns on
every sampled row alike, including the rows that a ReLU after it sets to zero
in the seed.  There the pruned network only has to stay below the cut too.  So,
after the plain solve, each row the seed's ReLU zeroes gets as its target the
fit's own value where that is below the cut, else the cut, and the layer is
solved again (the same Gram matrix and ridge strength: only the right-hand side
changes), a few times.

Where the cut is, in the layer's own output units (a :data:`Gate`):

* a conv whose BatchNorm feeds only a ReLU: per channel, where the norm's output is zero;
* a residual writer solved against the block output (derive/residual.py), whose
  add feeds only a ReLU: per row and channel, where the branch cancels the
  pruned network's own shortcut.

Measured in benchmarks/results/reconstruct_*: issue 55.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

#: (threshold, per channel or per row and channel; True per channel where values above it pass the ReLU)
Gate = tuple[torch.Tensor, torch.Tensor]


def norm_gate(bn: nn.Module | None) -> Gate | None:
    """Where the ReLU after BatchNorm ``bn`` cuts, in its input's units; None for another kind of layer."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or not bn.affine:
        return None
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    ok = gamma.abs() > 1e-12  # a zero gain: the channel is constant, and no row is released
    t = bn.running_mean - beta * (bn.running_var + bn.eps).sqrt() / torch.where(ok, gamma, torch.ones_like(gamma))
    return torch.where(ok, t, torch.full_like(t, -math.inf)), gamma >= 0


def relaxed(parts: torch.Tensor, y: torch.Tensor, w: torch.Tensor, gate: Gate, iterations: int,
            resolve: Callable[[torch.Tensor], torch.Tensor | None]) -> torch.Tensor:
    """``w`` (groups x unknowns x outputs) re-solved ``iterations`` times with the rows the seed's ReLU zeroes
    released (see the module docstring); ``parts``: groups x rows x unknowns; ``resolve``: the ridge solve
    for a new right-hand side (groups x unknowns x outputs), None where it is not finite."""
    t, up = gate
    dead = torch.where(up, y < t, y > t)
    g = parts.shape[0]
    for _ in range(iterations):
        pred = (parts @ w.to(parts.dtype)).transpose(0, 1).reshape(len(y), -1)
        z = torch.where(dead, torch.where(up, torch.minimum(pred, t), torch.maximum(pred, t)), y)
        nxt = resolve((parts.transpose(1, 2) @ z.reshape(len(z), g, -1).transpose(0, 1)).double())
        if nxt is None:
            break
        w = nxt
    return w
