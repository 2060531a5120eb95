"""Superblocks: group a seed's blocks into a few contiguous segments.

A *block* is the unit a CNN is built from (a ResNet BasicBlock, an inverted
residual, a conv-bn-act unit, a lone conv); a *stage* is a maximal run of
blocks whose outputs share one spatial size; a *segment* (superblock) is a
contiguous run of blocks that shares one width modifier.  The first block
(stem) and whatever produces the logits (head) are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from scbp_edge.analysis import forward_with_hooks, trace_layers
from scbp_edge.errors import SegmentError

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class Segment:
    """One superblock: contiguous blocks sharing a width modifier."""

    index: int
    blocks: list[str]
    convs: list[str]
    out_channels: list[int]
    params: int = 0
    macs: int = 0


@dataclass
class Segmentation:
    """How a seed is cut into segments; JSON-serialisable."""

    mode: str
    stem: list[str]
    head: list[str]
    segments: list[Segment] = field(default_factory=list)

    def segment_of(self, module_name: str) -> int | None:
        """Index of the segment holding ``module_name`` (None for stem/head/outside)."""
        for seg in self.segments:
            for block in seg.blocks:
                if module_name == block or module_name.startswith(block + "."):
                    return seg.index
        return None


def _conv_count(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


def discover_blocks(model: nn.Module) -> list[str]:
    """Names of the model's blocks in definition order (see module docstring)."""
    blocks: list[str] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for cname, child in module.named_children():
            full = f"{prefix}.{cname}" if prefix else cname
            n = _conv_count(child)
            if n == 0:
                continue
            if isinstance(child, _CONTAINERS) and n > 1:
                walk(full, child)
            else:
                blocks.append(full)

    walk("", model)
    return blocks


def _block_shapes(model: nn.Module, blocks: list[str], input_shape: tuple[int, ...]) -> dict[str, tuple]:
    """Output shape of each block that runs in an eval forward pass."""
    shapes: dict[str, tuple] = {}
    mods = dict(model.named_modules())

    def hook_for(block: str):
        def hook(_m: nn.Module, _i: tuple, out) -> None:
            t = _first_tensor(out)  # blocks may return lists or dicts of tensors (HRNet-style branches)
            if t is not None:
                shapes.setdefault(block, tuple(t.shape))  # first call wins (shared modules)

        return hook

    forward_with_hooks(model, input_shape, {mods[b]: hook_for(b) for b in blocks})
    return shapes


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
    return next((t for t in (_first_tensor(i) for i in items) if t is not None), None)


def _stages(blocks: list[str], shapes: dict[str, tuple]) -> list[list[str]]:
    stages: list[list[str]] = []
    last = None
    for b in blocks:
        size = shapes[b][2:] if len(shapes[b]) == 4 else shapes[b]
        if stages and size == last:
            stages[-1].append(b)
        else:
            stages.append([b])
        last = size
    return stages


def _too_few_blocks(model: nn.Module, n: int) -> str:
    """Why a seed has nothing to segment, naming the attention layers of a transformer by path and type."""
    attn = [(name, type(m).__name__) for name, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()]
    if attn:
        return (f"the seed is not a CNN: its blocks are attention layers ({len(attn)}, e.g. {attn[0][0]} "
                f"({attn[0][1]})), with {n} conv block(s); SCBP prunes convolutional blocks, so choose a CNN seed "
                "(scbp-edge seeds lists them)")
    return (f"found {n} conv block(s); SCBP needs a stem plus at least one block of convolutions; choose a CNN seed "
            "(scbp-edge seeds lists them)")


def segment_model(model: nn.Module, input_shape: tuple[int, ...], segments: str | int = "stages") -> Segmentation:
    """Cut ``model`` into segments: ``"stages"`` (one per stage) or ``N`` equal runs of blocks."""
    layers = trace_layers(model, input_shape)
    if not layers:
        raise SegmentError("the seed has no Conv2d/Linear layers; SCBP needs a CNN")
    found = discover_blocks(model)
    shapes = _block_shapes(model, found, input_shape)
    blocks = [b for b in found if b in shapes]  # drop blocks unused in eval (aux heads)
    classifier = layers[-1].name
    head = [b for b in blocks if classifier == b or classifier.startswith(b + ".")]
    body = [b for b in blocks if b not in head]
    if len(body) < 2:
        raise SegmentError(_too_few_blocks(model, len(body)))
    stem, body = body[:1], body[1:]
    if isinstance(segments, str) and segments.isdigit():
        segments = int(segments)
    if segments == "stages":
        groups = _stages(body, shapes)
    elif isinstance(segments, int):
        if not 1 <= segments <= len(body):
            raise SegmentError(
                f"--segments {segments} is out of range: this seed has {len(body)} prunable blocks, "
                f"so use 1..{len(body)} or 'stages'"
            )
        q, r = divmod(len(body), segments)
        sizes = [q + (i < r) for i in range(segments)]
        starts = [sum(sizes[:i]) for i in range(segments)]
        groups = [body[s : s + n] for s, n in zip(starts, sizes)]
    else:
        raise SegmentError(f"--segments '{segments}' is neither 'stages' nor a whole number")
    seg = Segmentation(mode=str(segments), stem=stem, head=head or [classifier])
    for i, group in enumerate(groups):
        seg.segments.append(Segment(i, group, [], []))
    mods = dict(model.named_modules())
    for rec in layers:
        idx = seg.segment_of(rec.name)
        if idx is None or not isinstance(mods[rec.name], nn.Conv2d):
            continue
        s = seg.segments[idx]
        s.convs.append(rec.name)
        s.out_channels.append(mods[rec.name].out_channels)
        s.macs += rec.macs
    for s in seg.segments:
        s.params = sum(p.numel() for b in s.blocks for p in mods[b].parameters())
    return seg
