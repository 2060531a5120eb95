"""Quantization-aware fine-tuning: train with int8 rounding simulated, then quantize as usual.

Every Conv2d/Linear sees its weight rounded to per-output-channel symmetric
int8 and its input rounded to per-tensor int8 with a running range; gradients
pass straight through the rounding.  The weights learn to live on the int8
grid; afterwards the wrappers are removed and the model is exported and
calibrated by the same post-training quantization as every other candidate,
so the QAT model ships in exactly the same form.
"""

from __future__ import annotations

import torch
from torch import nn


def _fake(x: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    scale = (amax / 127.0).clamp(min=1e-12)
    q = torch.clamp(torch.round(x / scale), -127, 127) * scale
    return x + (q - x).detach()  # straight-through estimator


class _FakeQuant(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("amax", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            cur = x.detach().abs().max()
            self.amax = cur if self.amax == 0 else 0.9 * self.amax + 0.1 * cur
        w = self.layer.weight
        wmax = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True)
        xq, wq = _fake(x, self.amax), _fake(w, wmax)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(xq, wq, self.layer.bias)
        return nn.functional.linear(xq, wq, self.layer.bias)


def _swap(model: nn.Module, wrap: bool) -> nn.Module:
    for name, child in list(model.named_children()):
        if wrap and isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(model, name, _FakeQuant(child))
        elif not wrap and isinstance(child, _FakeQuant):
            setattr(model, name, child.layer)
        else:
            _swap(child, wrap)
    return model


def qat_finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
                 teacher: nn.Module | None = None, on_epoch=None) -> nn.Module:
    """``model`` fine-tuned for ``epochs`` with int8 rounding simulated; returned as a plain float model."""
    from scbp_edge.accuracy import train

    _swap(model, wrap=True)
    try:
        model = train(model, x, y, epochs=epochs, lr=lr, teacher=teacher, on_epoch=on_epoch)
    finally:
        _swap(model, wrap=False)
    return model
