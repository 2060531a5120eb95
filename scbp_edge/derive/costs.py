"""Costs of a configuration from its pruning plan alone: no surgery, no model copy.

For every channel group the plan shrinks, the dependency graph says which
layers lose output and input channels and how many (coupling rules
included); each layer's parameters, buffers and multiply-accumulates then
follow from its new widths and the spatial size the seed's one traced forward
pass recorded.  A test checks the figures exactly against the physically
derived models of every built-in seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from scbp_edge.analysis import trace_layers
from scbp_edge.errors import DeriveError
from scbp_edge.seeds.family import custom_layer_for


@dataclass
class _Layer:
    name: str
    module: nn.Module
    out: int
    inp: int
    positions: int  # output positions per channel at batch 1 (H x W, or the leading dims of a Linear)
    segment: int | None


class CostModel:
    """Params, MACs, bytes and per-segment MACs of any configuration of one deriver."""

    def __init__(self, deriver) -> None:
        self.deriver = deriver
        seed = deriver.seed
        self._seed_model = deriver.graph.model
        traced = {r.name: r for r in trace_layers(self._seed_model, seed.spec.input_shape)}
        self._layers: dict[str, _Layer] = {}
        for name, m in self._seed_model.named_modules():
            out, inp = _widths(m)
            if out is None:
                continue
            rec = traced.get(name)
            positions = 0
            if rec is not None:
                positions = (rec.out_shape[2] * rec.out_shape[3] if len(rec.out_shape) == 4
                             else rec.macs // max(1, m.in_features * m.out_features))
            self._layers[name] = _Layer(name, m, out, inp or 0, positions, deriver.segmentation.segment_of(name))
        owned = {n for n in self._layers}
        self._fixed_bytes = sum(t.numel() * t.element_size() for n, m in self._seed_model.named_modules()
                                if n not in owned for t in _own_tensors(m))
        self._fixed_params = sum(p.numel() for n, m in self._seed_model.named_modules() if n not in owned
                                 for p in m.parameters(recurse=False))
        self._removed: dict[tuple[str, int], list[tuple[str, str, int]]] = {}

    def _removals(self, root: str, k: int) -> list[tuple[str, str, int]]:
        """(layer, "out"|"in", channels removed) when group ``root`` keeps ``k`` channels (cached)."""
        if (root, k) not in self._removed:
            self._removed[(root, k)] = self.deriver.graph.removals(root, k)
        return self._removed[(root, k)]

    def cost(self, ratios: Sequence[float], scopes: Sequence[str] = ()) -> tuple[int, int, int, list[int]]:
        """(params, MACs, state-dict bytes, MACs per segment) of the configuration ``ratios`` (and ``scopes``)."""
        out_rm: dict[str, int] = {}
        in_rm: dict[str, int] = {}
        for root, k in self.deriver.plan(ratios, scopes).items():
            for name, side, n in self._removals(root, k):
                (out_rm if side == "out" else in_rm)[name] = (out_rm if side == "out" else in_rm).get(name, 0) + n
        params, macs, size = self._fixed_params, 0, self._fixed_bytes
        seg = [0] * self.deriver.num_segments
        for name, lay in self._layers.items():
            out, inp = lay.out - out_rm.get(name, 0), lay.inp - in_rm.get(name, 0)
            if out <= 0 or (lay.inp > 0 and inp <= 0):  # seen on timm's GhostNet: a concat-then-slice (issue 30)
                raise DeriveError(f"pruning {list(ratios)} would leave layer '{name}' with no channels: its channels "
                                  "pass through a pattern the pruning does not map correctly; try smaller ratios, "
                                  "fewer --segments, or --ratios 0 for the segment that holds it")
            p, mac, b = _layer_cost(lay, out, inp)
            params, macs, size = params + p, macs + mac, size + b
            if lay.segment is not None:
                seg[lay.segment] += mac
        return params, macs, size, seg


def _own_tensors(m: nn.Module):
    yield from m.parameters(recurse=False)
    yield from m.buffers(recurse=False)


def _widths(m: nn.Module) -> tuple[int | None, int | None]:
    """(output, input) channels of a layer whose size pruning changes; (None, None) for anything else."""
    if isinstance(m, nn.Conv2d):
        return m.out_channels, m.in_channels
    if isinstance(m, nn.Linear):
        return m.out_features, m.in_features
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_features:
        return m.num_features, None
    custom = custom_layer_for(m)
    if custom is not None:
        return custom.out_channels(m), custom.in_channels(m)
    return None, None


def _layer_cost(lay: _Layer, out: int, inp: int) -> tuple[int, int, int]:
    """(params, MACs, bytes) of one layer at its new widths."""
    m = lay.module
    if isinstance(m, nn.Conv2d):
        depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        if depthwise:  # one filter per channel: its input width is its output width
            inp, groups = out, out
        else:
            groups = m.groups
        kh, kw = m.kernel_size
        params = out * (inp // groups) * kh * kw + (out if m.bias is not None else 0)
        return params, out * lay.positions * (inp // groups) * kh * kw, params * m.weight.element_size()
    if isinstance(m, nn.Linear):
        params = out * inp + (out if m.bias is not None else 0)
        return params, lay.positions * inp * out, params * m.weight.element_size()
    custom = custom_layer_for(m)
    if custom is not None:
        return custom.cost(m, out, inp, lay.positions)
    params = 2 * out if m.affine else 0  # BatchNorm: weight and bias, running mean and variance, a step counter
    stats = 2 * out * m.running_mean.element_size() if m.track_running_stats else 0
    counter = m.num_batches_tracked.numel() * 8 if m.num_batches_tracked is not None else 0
    return params, 0, params * 4 + stats + counter
