"""The one module that imports torch_pruning.

It turns a seed into a list of coupled channel groups (channels joined by a
residual add, a concat or a depthwise conv share a group) and physically
removes the least important channels of each group.  SCBP decides *how many*
channels each group keeps; this adapter decides *which* (group L1 magnitude)
and does the surgery.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from scbp_edge.derive.coupled import coupled_classes, split_classes
from scbp_edge.derive.refusals import trace_failure
from scbp_edge.derive.shuffle import SHUFFLE_MARK, opaque_shuffles
from scbp_edge.errors import DeriveError
from scbp_edge.seeds.family import CustomLayer, custom_layer_for, custom_layers

# Torch-Pruning imports timm where installed, for op-count hooks on ViT attention that we never use, and timm
# imports torchvision: 1.9 of every build's seconds.  Hidden for the import unless a timm seed loaded it first.
_HIDE_TIMM = "timm" not in sys.modules
if _HIDE_TIMM:
    sys.modules["timm"] = None  # type: ignore[assignment]  # None makes `import timm` fail, as if absent
try:
    import torch_pruning as tp
finally:
    if _HIDE_TIMM:
        del sys.modules["timm"]


class _CustomPruner(tp.pruner.BasePruningFunc):
    """Teaches Torch-Pruning a seed family's custom layer, through the rules the family declared."""

    def __init__(self, layer: CustomLayer) -> None:
        super().__init__()
        self.layer = layer
        self.TARGET_MODULES = layer.module
        if layer.prune_in is layer.prune_out:  # channel i in is channel i out (as in BatchNorm): pruning passes
            self.prune_in_channels = self.prune_out_channels  # type: ignore[method-assign]  # TP tests identity

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return self.layer.prune_out(layer, idxs)

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return self.layer.prune_in(layer, idxs)

    def get_out_channels(self, layer: nn.Module) -> int:
        return self.layer.out_channels(layer)

    def get_in_channels(self, layer: nn.Module) -> int:
        return self.layer.in_channels(layer)


def _custom_pruners() -> dict[type[nn.Module], _CustomPruner]:
    return {c.module: _CustomPruner(c) for c in custom_layers()}


#: how the channels a group keeps are chosen (PruningGraph.score)
CRITERIA = ("l1", "taylor", "activation")


class Unverifiable(DeriveError):
    """The masked-seed check does not apply to this network (a layer mixes channels, as LayerNorm does)."""


@dataclass
class ChannelGroup:
    """A set of channels that must be pruned together, rooted at one layer."""

    root: str
    channels: int
    out_layers: list[str]
    #: its channels meet another branch's in an add: the residual stream of a stage, not a block's insides
    stream: bool = False


class PruningGraph:
    """Dependency analysis of one seed, done once; derives any number of models from it."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], ignored: list[str]) -> None:
        self._model = model.eval()  # read only: every derivation and mask works on its own copy
        self._ignored = ignored
        # Channel dependencies do not depend on the image size, and tracing at 224x224 costs most of the
        # memory and time: trace at 64x64 where the network runs there, else at its own size.
        c, h, w = input_shape
        self._input_shape = (c, min(h, 64), min(w, 64))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._dg = self._build(self._model)
            except DeriveError:
                if self._input_shape == tuple(input_shape):
                    raise
                self._input_shape = tuple(input_shape)
                self._dg = self._build(self._model)
        self.warnings = [str(w.message).splitlines()[0] for w in caught]
        self._names = {m: n for n, m in self._model.named_modules()}
        self.groups: list[ChannelGroup] = []
        #: channel groups left at full width, and why (grouped convolutions, unscorable coupling)
        self.frozen: dict[str, str] = {}
        self._importance: dict[str, torch.Tensor] = {}
        #: groups whose channels Torch-Pruning removes in classes (ghost modules), see derive/coupled.py
        self.classes: dict[str, list[list[int]]] = {}
        self.criterion = "l1"
        scorer = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
        mods = dict(self._model.named_modules())
        ignored_mods = [m for name in ignored for m in mods[name].modules()]
        found = self._all_groups(ignored_mods)
        # Sorted by root name: Torch-Pruning's own order follows object hashes and differed between runs.
        for group in sorted(found, key=lambda g: self._names.get(g[0].dep.target.module, "")):
            root = self._names[group[0].dep.target.module]
            why = self._unprunable(group)
            try:
                importance = None if why else scorer(group).detach().clone()  # the seed's own weights
            except Exception as exc:  # noqa: BLE001 - split/slice couplings the scorer cannot index
                why, importance = f"its coupling cannot be scored ({type(exc).__name__})", None
            if why:
                self.frozen[root] = why
                continue
            outs = [self._names[dep.target.module] for dep, _ in group
                    if self._dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in self._names]
            channels = int(self._dg.get_out_channels(group[0].dep.target.module))
            self.groups.append(ChannelGroup(root, channels, outs, _passes_add(group)))
            self._importance[root] = importance
            classes = coupled_classes(self._dg, group[0].dep.target.module, channels)
            if classes is not None:
                self.classes[root] = classes

    def _all_groups(self, ignored: list[nn.Module]) -> list[Any]:
        """Torch-Pruning's channel groups, each root named to the time bound while it is resolved: grouping, not
        the trace, takes minutes on some small networks (timm's RexNet), and a bound that hits names its group."""
        from scbp_edge.derive.bounded import note

        resolve = self._dg.get_pruning_group

        def named(module: nn.Module, fn: Any, idxs: Any) -> Any:
            note(f"while grouping the channels of '{self._names.get(module, '?')}' ({type(module).__name__})")
            return resolve(module, fn, idxs)

        self._dg.get_pruning_group = named  # the instance attribute shadows the method get_all_groups calls
        try:
            return list(self._dg.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear)))
        finally:
            del self._dg.get_pruning_group

    def score(self, criterion: str, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Re-rank every group's channels by ``criterion`` (one of CRITERIA); the data-aware ones read (x, y).

        ``l1`` keeps the largest filters (group L1, the default at construction);
        ``taylor`` the channels whose removal changes the loss least (first-order
        Taylor, weight x gradient, on the images and labels); ``activation`` the
        channels whose inputs to the next layers are largest on the images.  The
        benchmark that chose the default: benchmarks/results/reconstruct_*.md.
        """
        if criterion not in CRITERIA:
            raise DeriveError(f"criterion '{criterion}' is not one of {', '.join(CRITERIA)}")
        if criterion != "l1" and (x is None or (criterion == "taylor" and y is None)):
            raise DeriveError(f"criterion '{criterion}' needs images{' and labels' if criterion == 'taylor' else ''}: "
                              "give --data, or use --criterion l1")
        mods = dict(self._model.named_modules())
        if criterion == "l1":
            self._rescore(mods, tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None))
        elif criterion == "taylor":
            self._model.zero_grad(set_to_none=True)
            step = _batch_for(x)
            for i in range(0, len(x), step):  # eval mode: the seed's BN statistics, as deployed
                nn.functional.cross_entropy(self._model(x[i : i + step]), y[i : i + step], reduction="sum").backward()
            try:
                self._rescore(mods, tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer=None))
            finally:
                self._model.zero_grad(set_to_none=True)
        else:
            scorer = tp.importance.ActivationImportance(group_reduction="mean", normalizer=None)
            with scorer.compute_importance(self._model), torch.no_grad():
                self._model(x[: _batch_for(x)])  # one batch: Torch-Pruning's hook keeps the last call only
            try:
                self._rescore(mods, scorer)
            finally:
                for m in self._model.modules():
                    m.__dict__.pop("_importance", None)
        self.criterion = criterion

    def _rescore(self, mods: dict[str, nn.Module], scorer) -> None:
        for root in list(self._importance):
            layer = mods[root]
            handler = self._dg.get_pruner_of_module(layer).prune_out_channels
            n = self._importance[root].numel()
            imp = scorer(self._dg.get_pruning_group(layer, handler, idxs=list(range(n))))
            if imp is not None and imp.numel() == n and torch.isfinite(imp).all():
                self._importance[root] = imp.detach().clone()  # else: this group keeps its L1 ranking

    def _unprunable(self, group) -> str | None:
        """Why a channel group must keep its width: a grouped (not depthwise) convolution, a shuffle, a split.

        Torch-Pruning removes channels of a grouped convolution as if each group
        followed the same pattern, which it does not: such networks came out
        mis-wired (RegNet, ResNeXt).  Whole-group pruning is not implemented, so
        these widths stay; everything else in the network is pruned as usual.
        """
        for dep, _ in group:
            m = dep.target.module
            if isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels):
                return f"it touches the grouped convolution {self._names.get(m, '?')} (groups={m.groups})"
            for node in (dep.source, dep.target):
                if SHUFFLE_MARK in str(node.name):
                    return "its channels pass through a channel shuffle (split, concat, view/transpose/view)"
                # CSP stages and ghost modules: pruned across a chunk or a channel slice, they came out mis-wired
                if node.type == tp.ops.OPTYPE.SPLIT:
                    return f"its channels pass through a split ({str(node.name).split('(')[0]}: chunk or split)"
                if node.type == tp.ops.OPTYPE.SLICE and getattr(node.module, "dim", None) == 1:
                    return f"its channels pass through a channel slice ({str(node.name).split('(')[0]})"
                if _five_d_reshape(node):  # a hand-written shuffle: Torch-Pruning maps it as if channels stayed put
                    return f"its channels pass through a 5-D reshape ({str(node.name).split('(')[0]}), e.g. a shuffle"
        return None

    def _build(self, model: nn.Module) -> tp.DependencyGraph:
        try:
            with opaque_shuffles(model):
                return tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, *self._input_shape),
                                                             customized_pruners=_custom_pruners(), verbose=True)
        except Exception as exc:  # noqa: BLE001 - any tracing failure is the seed's, report it
            names = {m: n for n, m in model.named_modules()}
            raise DeriveError(trace_failure(exc, self.unhandled_layers(), names)) from None

    def unhandled_layers(self) -> list[str]:
        """Layers with parameters of a type Torch-Pruning has no pruner for, or with parameters it does not prune.

        A subclass of a known layer with a parameter of its own (timm's ScaledStdConv2d and its per-filter
        ``gain``) is pruned as its base class, and that parameter keeps its width.
        """
        known = (*(tp.ops.type2class(t) for t in tp.DependencyGraph().REGISTERED_PRUNERS),
                 *(c.module for c in custom_layers()))
        out = []
        for n, m in self._model.named_modules():
            own = [p for p, _ in m.named_parameters(recurse=False)]
            if not own:
                continue
            if not isinstance(m, known):
                out.append(f"{n} ({type(m).__name__})")
            elif extra := [p for p in own if p not in ("weight", "bias")]:
                out.append(f"{n} ({type(m).__name__}: its parameter '{extra[0]}' is not pruned)")
        return out

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

    @property
    def model(self) -> nn.Module:
        """The analysed seed (read it, never change it)."""
        return self._model

    def removals(self, root: str, k: int) -> list[tuple[str, str, int]]:
        """(layer, "out" | "in", channels removed) of every layer group ``root`` touches when it keeps ``k``.

        What the surgery would do, read from the dependency graph without doing it.
        """
        _, drop = self._split(root, k)
        if not drop:
            return []
        layer = dict(self._model.named_modules())[root]
        handler = self._dg.get_pruner_of_module(layer).prune_out_channels
        out = []
        for dep, idxs in self._dg.get_pruning_group(layer, handler, idxs=drop):
            name = self._names.get(dep.target.module)
            if name is not None:
                side = "out" if self._dg.is_out_channel_pruning_fn(dep.handler) else "in"
                out.append((name, side, len(set(int(i) for i in idxs))))
        return out

    def masked(self, keep: dict[str, int]) -> nn.Module:
        """The seed with every channel that ``keep`` drops zeroed instead of removed.

        A correct derivation computes exactly what this computes (dropped
        channels contribute nothing downstream), so comparing the two checks the
        surgery independently of how it rewired each consumer.  Raises
        DeriveError when a layer with parameters cannot be masked.
        """
        model = copy.deepcopy(self._model)
        mods = dict(model.named_modules())
        seed_mods = dict(self._model.named_modules())
        for root, k in keep.items():
            _, drop = self._split(root, k)
            if not drop:
                continue
            layer = seed_mods[root]
            handler = self._dg.get_pruner_of_module(layer).prune_out_channels
            for dep, idxs in self._dg.get_pruning_group(layer, handler, idxs=drop):
                name = self._names.get(dep.target.module)
                if name is not None and self._dg.is_out_channel_pruning_fn(dep.handler):
                    _zero_out_channels(mods[name], [int(i) for i in idxs], name)
        return model.eval()

    def kept_outputs(self, keep: dict[str, int]) -> dict[str, list[int]]:
        """Seed output-channel indices that each layer (conv, linear, norm) keeps under ``keep``.

        Layers whose outputs no group prunes are absent: they keep every channel.
        The surgery keeps survivors in seed order, so index ``i`` of the pruned
        layer is seed channel ``result[name][i]``.
        """
        dropped: dict[str, set[int]] = {}
        seed_mods = dict(self._model.named_modules())
        for root, k in keep.items():
            _, drop = self._split(root, k)
            if not drop:
                continue
            handler = self._dg.get_pruner_of_module(seed_mods[root]).prune_out_channels
            for dep, idxs in self._dg.get_pruning_group(seed_mods[root], handler, idxs=drop):
                name = self._names.get(dep.target.module)
                if name is not None and self._dg.is_out_channel_pruning_fn(dep.handler):
                    dropped.setdefault(name, set()).update(int(i) for i in idxs)
        out = {}
        for name, gone in dropped.items():
            n = self._dg.get_out_channels(seed_mods[name])
            if n is not None:
                out[name] = [i for i in range(int(n)) if i not in gone]
        return out

    def kept_indices(self, root: str, k: int) -> list[int]:
        """Seed channel indices that survive when group ``root`` keeps ``k`` channels."""
        return self._split(root, k)[0]

    def _split(self, root: str, k: int) -> tuple[list[int], list[int]]:
        """(kept, dropped) seed channel indices of group ``root`` when it keeps ``k`` channels."""
        imp = self._importance[root]
        n = imp.numel()
        if k >= n:
            return list(range(n)), []
        if root in self.classes:
            return split_classes(imp, self.classes[root], k)
        # Lowest-importance channels go; a stable sort keeps ties deterministic.
        order = torch.argsort(imp, stable=True)
        return sorted(order[n - k :].tolist()), sorted(order[: n - k].tolist())


def _passes_add(group) -> bool:  # noqa: ANN001 - a Torch-Pruning group
    """Whether a group's channels are summed with another branch's (a residual add), read from the traced graph.

    Only an add of two or more traced inputs counts: ``x + 3`` inside an activation, or a bias added by hand,
    has one, and so does a ReLU or a mean (Torch-Pruning's other element-wise nodes).
    """
    for dep, _ in group:
        for node in (dep.source, dep.target):
            if (node.type == tp.ops.OPTYPE.ELEMENTWISE and len(node.inputs) >= 2
                    and type(node.grad_fn).__name__.startswith(("AddBackward", "SubBackward"))):
                return True
    return False


def _batch_for(x: torch.Tensor) -> int:
    """Images per forward for scoring: 128 at 32x32, fewer for large inputs (activation memory)."""
    return max(1, min(128, (1 << 22) // max(1, x[0].numel())))


def _five_d_reshape(node) -> bool:  # noqa: ANN001 - a Torch-Pruning graph node
    gf = node.grad_fn
    sizes = getattr(gf, "_saved_self_sym_sizes", None) or getattr(gf, "_saved_self_sizes", None)
    return node.type == tp.ops.OPTYPE.RESHAPE and sizes is not None and len(sizes) == 5


@torch.no_grad()
def _zero_out_channels(m: nn.Module, idxs: list[int], name: str) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
        if m.weight is not None:
            m.weight[idxs] = 0
        if getattr(m, "bias", None) is not None:
            m.bias[idxs] = 0
    elif (custom := custom_layer_for(m)) is not None:
        custom.zero_out(m, idxs)
    elif isinstance(m, nn.PReLU) or not any(True for _ in m.parameters(recurse=False)):
        pass  # no parameter of its own that a dropped channel could leak through
    else:  # e.g. LayerNorm over channels: a zeroed channel still shifts the others' statistics
        raise Unverifiable(f"{name} ({type(m).__name__}) mixes channels, so zeroing one is not removing it")


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
            customized_pruners=_custom_pruners(),
        )
        pruner.step()
    return model.eval()
