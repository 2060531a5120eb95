"""Seed families: a family is one module plus an entry point in the group ``scbp_edge.seeds``.

A family declares the seed names it builds, their default class count and
input shape, how to build one, weights it knows by name, and the custom layers
it brings.  A custom
layer tells pruning what Torch-Pruning and the cost model cannot know: how its
channels follow pruning, how to silence a channel for the masked-seed check,
and what it costs at new widths.  ``derive/`` asks this registry instead of
naming any family's layers (Torch-Pruning's per-module registration,
``customized_pruners``, without importing Torch-Pruning here).

Register a family in ``pyproject.toml``::

    [project.entry-points."scbp_edge.seeds"]
    myfamily = "mypackage.seeds:FAMILY"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata

from torch import nn

from scbp_edge.errors import SeedError
from scbp_edge.resources import entry_points

GROUP = "scbp_edge.seeds"


@dataclass(frozen=True)
class CustomLayer:
    """A layer type with channels that no built-in rule handles, and the rules pruning needs for it."""

    module: type[nn.Module]
    out_channels: Callable[[nn.Module], int]
    in_channels: Callable[[nn.Module], int]
    prune_out: Callable[[nn.Module, Sequence[int]], nn.Module]  # drop these output channels, in place
    #: drop these input channels, in place; the very same function as ``prune_out`` where each channel maps to
    #: itself (as in BatchNorm), so that pruning passes through the layer
    prune_in: Callable[[nn.Module, Sequence[int]], nn.Module]
    zero_out: Callable[[nn.Module, list[int]], None]  # make these output channels contribute nothing
    cost: Callable[[nn.Module, int, int, int], tuple[int, int, int]]  # (params, MACs, bytes) at (out, in, positions)


@dataclass(frozen=True)
class SeedFamily:
    """Seeds built by one module: their names, defaults, builder and custom layers."""

    name: str
    seeds: tuple[str, ...]
    num_classes: int
    input_shape: tuple[int, int, int]
    build: Callable[[str, int, int], nn.Module]  # (seed name, classes, input channels) -> untrained network
    custom_layers: tuple[CustomLayer, ...] = ()
    #: loads weights given by name rather than by file (model, seed name, weight name), where the family has any
    named_weights: Callable[[nn.Module, str, str], None] | None = None


@lru_cache(maxsize=1)
def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    return tuple(entry_points(GROUP).values())


_LOADED: list[SeedFamily] = []  # in load order


@cache
def _load(ep: metadata.EntryPoint) -> SeedFamily:
    try:
        fam = ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
        raise SeedError(f"seed family '{ep.name}' ({ep.value}) cannot be imported: "
                        f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(fam, SeedFamily):
        raise SeedError(f"seed family '{ep.name}' ({ep.value}) is not a scbp_edge.seeds.family.SeedFamily")
    _LOADED.append(fam)
    return fam


def families() -> tuple[SeedFamily, ...]:
    """Every registered family, in entry-point name order; a broken one is named in one line."""
    return tuple(_load(ep) for ep in _entry_points())


def family_of(seed: str) -> SeedFamily | None:
    """The registered family that builds ``seed``, if any (families are imported in order until one does)."""
    for ep in _entry_points():
        fam = _load(ep)
        if seed in fam.seeds:
            return fam
    return None


def custom_layers() -> tuple[CustomLayer, ...]:
    """The custom layers of every family loaded so far.

    A network's layers come from the family that built it (``build_model`` loads it first, in every worker too),
    so the others need not load: torchvision's import alone took 1.9 s of every CIFAR build when this loaded all.
    """
    return tuple(layer for f in _LOADED for layer in f.custom_layers)


def custom_layer_for(m: nn.Module) -> CustomLayer | None:
    """The rules for ``m`` where a family declared its type."""
    return next((c for c in custom_layers() if isinstance(m, c.module)), None)
