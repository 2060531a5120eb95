"""The one module that imports torch_pruning.

It turns a seed into a list of coupled channel groups (channels joined by a
residual add, a concat or a depthwise conv share a group) and physically
removes the least important channels of each group.  SCBP decides *how many*
channels each group keeps; this adapter decides *which* (group L1 magnitude)
and does the surgery.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from scbp_edge.errors import DeriveError
from scbp_edge.seeds.cifar_resnet import OptionAShortcut


class _OptionAPruner(tp.pruner.BasePruningFunc):
    """Teaches Torch-Pruning the option-A shortcut: out and in channels are independent.

    Removing output channels drops entries of the index; removing input
    channels turns their entries into zero channels and renumbers the rest.
    """

    TARGET_MODULES = OptionAShortcut

    def prune_out_channels(self, layer: OptionAShortcut, idxs: Sequence[int]) -> nn.Module:
        keep = [i for i in range(layer.out_channels) if i not in set(idxs)]
        layer.src_index = layer.src_index[keep].clone()
        return layer

    def prune_in_channels(self, layer: OptionAShortcut, idxs: Sequence[int]) -> nn.Module:
        removed = torch.zeros(layer.in_channels, dtype=torch.bool)
        removed[list(idxs)] = True
        new_pos = torch.cumsum(~removed, 0) - 1
        src = layer.src_index
        valid = src >= 0
        mapped = torch.full_like(src, -1)
        ok = valid & ~removed[src.clamp(min=0)]
        mapped[ok] = new_pos[src[ok]]
        layer.src_index = mapped
        layer.in_channels = int((~removed).sum())
        return layer

    def get_out_channels(self, layer: OptionAShortcut) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: OptionAShortcut) -> int:
        return layer.in_channels


@dataclass
class ChannelGroup:
    """A set of channels that must be pruned together, rooted at one layer."""

    root: str
    channels: int
    out_layers: list[str]


class PruningGraph:
    """Dependency analysis of one seed, done once; derives any number of models from it."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], ignored: list[str]) -> None:
        self._model = copy.deepcopy(model).eval()
        self._input_shape = input_shape
        self._ignored = ignored
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._dg = self._build(self._model)
        self.warnings = [str(w.message).splitlines()[0] for w in caught]
        self._names = {m: n for n, m in self._model.named_modules()}
        self.groups: list[ChannelGroup] = []
        self._importance: dict[str, torch.Tensor] = {}
        scorer = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
        mods = dict(self._model.named_modules())
        ignored_mods = [m for name in ignored for m in mods[name].modules()]
        for group in self._dg.get_all_groups(ignored_layers=ignored_mods, root_module_types=(nn.Conv2d, nn.Linear)):
            root = self._names[group[0].dep.target.module]
            outs = [
                self._names[dep.target.module]
                for dep, _ in group
                if self._dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in self._names
            ]
            channels = int(self._dg.get_out_channels(group[0].dep.target.module))
            self.groups.append(ChannelGroup(root, channels, outs))
            # Importance from the seed's own weights, fixed before any surgery.
            self._importance[root] = scorer(group).detach().clone()

    def _build(self, model: nn.Module) -> tp.DependencyGraph:
        try:
            return tp.DependencyGraph().build_dependency(
                model,
                example_inputs=torch.randn(1, *self._input_shape),
                customized_pruners={OptionAShortcut: _OptionAPruner()},
                verbose=True,
            )
        except Exception as exc:  # noqa: BLE001 - any tracing failure is the seed's, report it
            raise DeriveError(
                f"Torch-Pruning could not trace this seed ({type(exc).__name__}: {exc}); "
                f"unsupported layers: {', '.join(self.unhandled_layers()) or 'none found'}"
            ) from None

    def unhandled_layers(self) -> list[str]:
        """Layers with parameters of a type Torch-Pruning has no pruner for."""
        known = tuple(tp.ops.type2class(t) for t in tp.DependencyGraph().REGISTERED_PRUNERS) + (OptionAShortcut,)
        return [
            f"{n} ({type(m).__name__})"
            for n, m in self._model.named_modules()
            if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, known)
        ]

    def derive(self, keep: dict[str, int]) -> nn.Module:
        """A physically pruned copy keeping ``keep[root]`` strongest channels of each group."""
        model = copy.deepcopy(self._model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already reported once in __init__
            dg = self._build(model)
        mods = dict(model.named_modules())
        for root, k in keep.items():
            _, drop = self._split(root, k)
            if not drop:
                continue
            layer = mods[root]
            handler = dg.get_pruner_of_module(layer).prune_out_channels
            group = dg.get_pruning_group(layer, handler, idxs=drop)
            group.prune()
        return model.eval()

    def kept_indices(self, root: str, k: int) -> list[int]:
        """Seed channel indices that survive when group ``root`` keeps ``k`` channels."""
        return self._split(root, k)[0]

    def _split(self, root: str, k: int) -> tuple[list[int], list[int]]:
        """(kept, dropped) seed channel indices of group ``root`` when it keeps ``k`` channels."""
        imp = self._importance[root]
        n = imp.numel()
        if k >= n:
            return list(range(n)), []
        # Lowest-importance channels go; a stable sort keeps ties deterministic.
        order = torch.argsort(imp, stable=True)
        return sorted(order[n - k :].tolist()), sorted(order[: n - k].tolist())


def magnitude_prune(
    model: nn.Module, input_shape: tuple[int, ...], ratio: float, *, global_pruning: bool, ignored: list[str],
    round_to: int,
) -> nn.Module:
    """Torch-Pruning's own one-shot L1 magnitude pruning (uniform or global): the peer baseline.

    Used by benchmarks to compare SCBP against the library's standard pruners
    under the same fine-tune budget; it never touches SCBP's own path.
    """
    model = copy.deepcopy(model).eval()
    mods = dict(model.named_modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MagnitudePruner(
            model, torch.randn(1, *input_shape),
            importance=tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer="mean"),
            global_pruning=global_pruning, pruning_ratio=ratio, max_pruning_ratio=0.9,
            ignored_layers=[m for name in ignored for m in mods[name].modules()], round_to=round_to,
            customized_pruners={OptionAShortcut: _OptionAPruner()},
        )
        pruner.step()
    return model.eval()
