"""Derive: turn a seed plus one c-ratio per segment into a physically smaller model.

SCBP's own logic lives here: the rounding rule, the mapping from segments to
Torch-Pruning's coupled channel groups (a group spanning several segments takes
the smallest ratio among them), and the per-candidate cost figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from scbp_edge.analysis import count_params, trace_layers
from scbp_edge.errors import DeriveError, SpaceError
from scbp_edge.seeds import Seed
from scbp_edge.segments import Segmentation

#: what a segment's ratio cuts: every channel group in it, or only those that do not pass through a residual add
SCOPES = ("stream", "inner")


def pruned_width(channels: int, ratio: float, multiple: int) -> int:
    """Channels a layer of ``channels`` keeps after removing fraction ``ratio``.

    The one rounding rule: ratio 0 keeps the layer intact; otherwise the kept
    count ``channels * (1 - ratio)`` is rounded to the nearest multiple of
    ``multiple``, never above ``channels`` and never below one multiple (a
    layer narrower than one multiple is left alone).
    """
    if not 0.0 <= ratio < 1.0:
        raise SpaceError(f"c-ratio {ratio} is outside [0, 1); a ratio is the fraction of filters removed")
    if multiple < 1:
        raise SpaceError(f"--round-to {multiple} must be >= 1")
    if ratio == 0.0 or channels <= multiple:
        return channels
    kept = multiple * math.floor(channels * (1.0 - ratio) / multiple + 0.5)
    return max(multiple, min(channels, kept))


@dataclass
class DerivedCost:
    """Static cost of one derived model (batch 1, fp32)."""

    params: int
    macs: int
    size_bytes: int


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> DerivedCost:
    """Params, MACs and fp32 bytes of parameters plus buffers."""
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    macs = sum(r.macs for r in trace_layers(model, input_shape))
    return DerivedCost(count_params(model), macs, size)


class Deriver:
    """Derives candidates of one seed under one segmentation and channel multiple."""

    def __init__(self, seed: Seed, segmentation: Segmentation, round_to: int = 8) -> None:
        from scbp_edge.derive.tp_adapter import PruningGraph

        self.seed = seed
        self.segmentation = segmentation
        self.round_to = round_to
        self.ignored = segmentation.stem + segmentation.head
        self.graph = PruningGraph(seed.model, seed.spec.input_shape, self.ignored)
        self.group_segments: dict[str, list[int]] = {}
        for g in self.graph.groups:
            segs = {segmentation.segment_of(n) for n in g.out_layers} - {None}
            if segs:
                self.group_segments[g.root] = sorted(segs)  # type: ignore[arg-type]
        #: segments holding a residual-stream group: the only ones where scope ``inner`` differs from ``stream``
        self.stream_segments = frozenset(
            s for g in self.graph.groups if g.stream for s in self.group_segments.get(g.root, ()))
        if not self.group_segments:
            raise DeriveError(
                "no prunable channel group lies in any segment; layers Torch-Pruning cannot handle: "
                + (_first(self.graph.unhandled_layers()) or "none")
            )

    @property
    def num_segments(self) -> int:
        return len(self.segmentation.segments)

    def scopes(self, ratios: Sequence[float], scopes: Sequence[str] = ()) -> tuple[str, ...]:
        """The canonical scopes of a configuration: ``()`` when it is the same network as all-``stream``.

        ``inner`` is kept only where it changes the network: a segment with a
        nonzero ratio that holds a residual-stream group.  Two spellings of one
        network therefore get one name and are derived once.
        """
        if not scopes:
            return ()
        if len(scopes) != len(ratios):
            raise SpaceError(f"config has {len(scopes)} scope(s) for {len(ratios)} segments; give one per segment")
        if bad := [s for s in scopes if s not in SCOPES]:
            raise SpaceError(f"scope '{bad[0]}' is not one of {', '.join(SCOPES)}")
        canon = tuple("inner" if s == "inner" and r > 0 and i in self.stream_segments else "stream"
                      for i, (r, s) in enumerate(zip(ratios, scopes)))
        return canon if "inner" in canon else ()

    def plan(self, ratios: Sequence[float], scopes: Sequence[str] = ()) -> dict[str, int]:
        """Channels each coupled group keeps under ``ratios`` (one per segment).

        ``scopes`` (one per segment, empty for all ``stream``): a segment whose
        scope is ``inner`` cuts only groups that do not pass through a residual
        add; a stream group spanning several segments takes the smallest ratio
        among those that cut the stream, and keeps its width if none does.
        """
        if len(ratios) != self.num_segments:
            raise SpaceError(
                f"config has {len(ratios)} ratio(s) but the seed has {self.num_segments} segments; "
                f"give one ratio per segment"
            )
        inner = {i for i, s in enumerate(self.scopes(ratios, scopes)) if s == "inner"}
        keep: dict[str, int] = {}
        for g in self.graph.groups:
            segs = [s for s in self.group_segments.get(g.root, ()) if not (g.stream and s in inner)]
            if segs:
                keep[g.root] = pruned_width(g.channels, min(ratios[s] for s in segs), self.round_to)
        return keep

    def derive(self, ratios: Sequence[float], verify: bool = True, *, scopes: Sequence[str] = ()) -> nn.Module:
        """A physically pruned model inheriting the seed's strongest filters.

        ``verify``: check it computes what the seed computes with the dropped
        channels zeroed (:meth:`verify`) before anyone uses it.  ``scopes``: as in :meth:`plan`.
        """
        plan = self.plan(ratios, scopes)
        model = self.graph.derive(plan)
        _check_forward(model, self.seed.spec.input_shape, self.seed.spec.num_classes, self.graph)
        if verify:
            self.verify(model, plan)
        return model

    def verify(self, model: nn.Module, plan: dict[str, int], tol: float = 1e-3) -> float | None:
        """Relative difference between ``model`` and the masked seed; DeriveError naming the first bad group.

        None where the check does not apply (a layer such as LayerNorm mixes channels).
        """
        from scbp_edge.derive.tp_adapter import Unverifiable

        try:
            masked = self.graph.masked(plan)
        except Unverifiable:
            return None
        err = _masked_error(model, masked, self.seed.spec.input_shape)
        if err <= tol:
            return err
        for root, k in plan.items():  # which group is mis-wired: derive it alone
            single = {root: k}
            if _masked_error(self.graph.derive(single), self.graph.masked(single), self.seed.spec.input_shape) > tol:
                raise DeriveError(f"the derived model differs from the masked seed by {err:.2g} (relative): channel "
                                  f"group at {root} is mis-wired by pruning; exclude its segment or use ratio 0 there")
        raise DeriveError(f"the derived model differs from the masked seed by {err:.2g} (relative)")


def _masked_error(model: nn.Module, masked: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Largest output difference relative to the masked seed's own output scale (tiny outputs included)."""
    import torch

    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), masked(x)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _check_forward(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, graph: Any) -> None:
    import torch

    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - surgery broke the model: say which layers are suspect
        raise DeriveError(
            f"the derived model does not run ({type(exc).__name__}: {str(exc)[:200]}); "
            f"layers Torch-Pruning may not handle: {_first(graph.unhandled_layers()) or 'none found'}"
        ) from None
    if tuple(out.shape) != (1, num_classes):
        raise DeriveError(f"derived model outputs {tuple(out.shape)}, expected (1, {num_classes})")


def _first(names: list[str], n: int = 3) -> str:
    """The first ``n`` names and how many more: a refusal stays one readable line."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
