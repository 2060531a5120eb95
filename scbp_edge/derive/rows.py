"""A layer as a least-squares problem: its input at sampled positions as rows, its weights as unknowns.

Groups of a grouped convolution are separate problems (each reads its own
slice of channels); a bias is one more unknown, read against a column of ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def flat_rows(t: torch.Tensor) -> torch.Tensor:
    """A linear layer's input or output as (images, features): extra middle dims are averaged away."""
    return t if t.dim() == 2 else t.flatten(1, -2).mean(1)


def patches(m: nn.Module, x: torch.Tensor, site: Any) -> torch.Tensor:
    """The layer's input at the sampled positions: rows x (in_channels * kernel), plus a ones column for a bias."""
    if isinstance(m, nn.Linear):
        a = flat_rows(x)[site.n]
    else:
        kh, kw = m.kernel_size
        xp = nn.functional.pad(x, m._reversed_padding_repeated_twice)
        rows = site.h[:, None] * m.stride[0] + torch.arange(kh) * m.dilation[0]  # M, kh
        cols = site.w[:, None] * m.stride[1] + torch.arange(kw) * m.dilation[1]  # M, kw
        a = xp[site.n[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # M, kh, kw, C
        a = a.permute(0, 3, 1, 2).reshape(len(site.n), -1)  # M, C*kh*kw in the weight's (c, i, j) order
    if m.bias is not None:
        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    return a


def groups(m: nn.Module) -> int:
    """How many separate problems the layer is: a grouped convolution's groups, else 1."""
    return m.groups if isinstance(m, nn.Conv2d) else 1


def flat_weight(m: nn.Module) -> torch.Tensor:
    """The layer's weights (and bias) as groups x unknowns-per-group x outputs-per-group."""
    g = groups(m)
    w = m.weight.detach().reshape(m.weight.shape[0], -1)  # out, unknowns per group
    if m.bias is not None:
        w = torch.cat([w, m.bias.detach()[:, None]], 1)
    return w.reshape(g, -1, w.shape[1]).transpose(1, 2)  # g, d, out/g


def split_groups(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """Rows x unknowns -> groups x rows x unknowns-per-group (each group reads its own slice of channels)."""
    g = groups(m)
    bias = m.bias is not None
    core = a[:, : a.shape[1] - bias] if bias else a
    parts = core.reshape(len(a), g, -1).transpose(0, 1)  # g, M, d
    if bias:
        parts = torch.cat([parts, torch.ones(g, len(a), 1, dtype=a.dtype)], 2)
    return parts


def rel_error(m: nn.Module, a: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> float:
    """||A W - Y|| / ||Y|| on the sampled rows, for the layer's current (w None) or proposed weights."""
    w = flat_weight(m) if w is None else w
    pred = (split_groups(m, a) @ w).transpose(0, 1).reshape(len(a), -1)
    return float((pred - y).norm() / y.norm().clamp(min=1e-12))


@torch.no_grad()
def assign(m: nn.Module, w: torch.Tensor) -> None:
    """Write groups x d x out/g back into the layer's weight (and bias)."""
    flat = w.transpose(1, 2).reshape(m.weight.shape[0], -1)  # out, d
    if m.bias is not None:
        m.bias.copy_(flat[:, -1])
        flat = flat[:, :-1]
    m.weight.copy_(flat.reshape(m.weight.shape))
