"""ShuffleNet's blocks, made traceable for the channel analysis.

A ShuffleNet-v2 block splits its input's channels in two, runs one half
through a branch, concatenates and shuffles (view/transpose/view).  Torch-
Pruning cannot follow channels through the split and the shuffle (its index
mappings fail).  While the dependency graph is traced, each torchvision
``InvertedResidual`` therefore runs a forward in which the split and the
concat+shuffle are single opaque autograd nodes named with SHUFFLE_MARK.  The
channel groups that pass through them (the trunk) are then left at full width
and the branch-internal channels (1x1 conv -> depthwise conv -> 1x1 conv) are
pruned; the derived model runs torchvision's own forward, so it computes
exactly what the seed computes with those channels removed.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

SHUFFLE_MARK = "ScbpShuffle"


class _ScbpShuffleHalf(torch.autograd.Function):
    """The second half of the channels (the branch's input), as one node of the traced graph."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd's signature
        return x.chunk(2, dim=1)[1].clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        raise RuntimeError("traced for channel analysis only")


class _ScbpShuffleMerge(torch.autograd.Function):
    """Concatenate the two paths and shuffle the channels, as one node of the traced graph."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, split: bool) -> torch.Tensor:  # noqa: ANN001
        from torchvision.models.shufflenetv2 import channel_shuffle

        return channel_shuffle(torch.cat((a.chunk(2, dim=1)[0] if split else a, b), dim=1), 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        raise RuntimeError("traced for channel analysis only")


def _traced_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if self.stride == 1:
        return _ScbpShuffleMerge.apply(x, self.branch2(_ScbpShuffleHalf.apply(x)), True)
    return _ScbpShuffleMerge.apply(self.branch1(x), self.branch2(x), False)


@contextmanager
def opaque_shuffles(model: nn.Module) -> Iterator[None]:
    """Within the block, ShuffleNet-v2 blocks of ``model`` trace with opaque split and shuffle nodes."""
    blocks = []
    # A ShuffleNet block's class is torchvision's, loaded with the seed: no other network pays torchvision's
    # import (1.8 s, torch._dynamo included) at every trace.
    if "torchvision.models.shufflenetv2" in sys.modules:
        from torchvision.models.shufflenetv2 import InvertedResidual

        blocks = [m for m in model.modules() if type(m) is InvertedResidual]
    for b in blocks:
        b.forward = types.MethodType(_traced_forward, b)
    try:
        yield
    finally:
        for b in blocks:
            del b.forward
