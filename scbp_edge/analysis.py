"""Static cost analysis of a model: parameters and multiply-accumulates.

MACs count only Conv2d and Linear (the layers that dominate CNN cost and the
ones pruning shrinks); the figures are for batch 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerCost:
    """Cost of one Conv2d/Linear layer at batch 1, in execution order."""

    name: str
    macs: int
    params: int
    out_shape: tuple[int, ...]


def trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """Run one forward pass and return each Conv2d/Linear's cost, in execution order."""
    records: list[LayerCost] = []
    hooks = {mod: _cost_hook(name, records) for name, mod in model.named_modules()
             if isinstance(mod, (nn.Conv2d, nn.Linear))}
    forward_with_hooks(model, input_shape, hooks)
    return records


def forward_with_hooks(model: nn.Module, input_shape: tuple[int, ...], hooks: dict[nn.Module, Callable]) -> None:
    """One eval-mode, no-grad forward pass of a zero batch with temporary forward hooks."""
    handles = [mod.register_forward_hook(fn) for mod, fn in hooks.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - the model's own assertion or reshape at this size
        from scbp_edge.errors import SeedError

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:150]
        raise SeedError(f"the seed fails on a {'x'.join(map(str, input_shape))} input ({type(exc).__name__}: "
                        f"{first}); try its native size (e.g. --input-size 224) or a multiple of 32") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def _cost_hook(name: str, records: list[LayerCost]):
    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        params = sum(p.numel() for p in mod.parameters(recurse=False))
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            macs = out.numel() // out.shape[-1] * mod.in_features * mod.out_features
        records.append(LayerCost(name, int(macs), int(params), tuple(out.shape)))

    return hook


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
