"""Seeds: the off-the-shelf CNNs that SCBP derives candidates from.

A seed is named by a string (``cifar-resnet56``, ``resnet18``, any torchvision
classifier, or a user ``package.module:factory``) and carries its metadata in a
JSON-serialisable :class:`SeedSpec`, which is all that is needed to rebuild the
architecture later (derived-model files store the spec, never code).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from scbp_edge.errors import SeedError, WeightsError
from scbp_edge.seeds.family import families, family_of
from scbp_edge.seeds.weights import apply_state_dict, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class SeedSpec:
    """Everything needed to rebuild a seed's architecture, plus its metadata."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    weights: str | None = None
    class_names: tuple[str, ...] = field(default=())


@dataclass
class Seed:
    """A seed architecture with its (possibly pretrained) weights."""

    spec: SeedSpec
    model: nn.Module


def known_seeds() -> list[str]:
    """Seed names of every registered family (the CIFAR ResNets and torchvision's classifiers built in)."""
    return [n for f in families() for n in f.seeds]


def default_spec(name: str) -> SeedSpec:
    fam = family_of(name)
    if fam is not None:
        return SeedSpec(name, fam.num_classes, fam.input_shape)
    return SeedSpec(name, 1000, (3, 224, 224))


def build_model(spec: SeedSpec) -> nn.Module:
    """Build the seed architecture of ``spec`` with fresh (untrained) weights."""
    name = spec.name
    in_ch = spec.input_shape[0]
    fam = family_of(name)
    if fam is not None:
        return fam.build(name, spec.num_classes, in_ch)
    if ":" in name:
        return _build_factory(name, spec.num_classes)
    raise SeedError(
        f"unknown seed '{name}'; known: cifar-resnet20/32/44/56/110, resnet18/34/50/101/152 and "
        "the other torchvision classifiers (scbp-edge seeds lists them), or package.module:factory"
    )


def _build_factory(name: str, num_classes: int) -> nn.Module:
    if not _FACTORY_RE.match(name):
        raise SeedError(f"'{name}' is not of the form package.module:factory")
    mod_name, attr = name.split(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except Exception as exc:  # noqa: BLE001 - a user module can raise anything on import
        raise SeedError(f"cannot load factory '{name}' ({type(exc).__name__}: {str(exc)[:150]}); check that "
                        f"'{mod_name}' imports and defines '{attr}'") from None
    import inspect

    try:
        params = inspect.signature(factory).parameters
        takes = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes = False
    try:  # called once: with num_classes where it takes it
        model = factory(num_classes=num_classes) if takes else factory()
    except Exception as exc:  # noqa: BLE001 - the user's code failed; say where
        raise SeedError(f"factory '{name}' raised {type(exc).__name__}: {str(exc)[:150]}") from None
    if not isinstance(model, nn.Module):
        raise SeedError(f"factory '{name}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_seed(
    name: str,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    class_names: tuple[str, ...] = (),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Seed:
    """Build seed ``name`` and load ``weights`` (a checkpoint path or a torchvision weight name)."""
    base = default_spec(name)
    spec = SeedSpec(
        name=name,
        num_classes=num_classes or base.num_classes,
        input_shape=input_shape or base.input_shape,
        mean=mean or base.mean,
        std=std or base.std,
        weights=str(weights) if weights is not None else None,
        class_names=class_names,
    )
    model = build_model(spec)
    if weights is not None:
        fam = family_of(name)
        if Path(weights).exists() or "/" in str(weights) or str(weights).endswith((".pt", ".pth", ".th")):
            apply_state_dict(model, read_state_dict(weights), f"'{weights}'")
        elif fam is not None and fam.named_weights is not None:
            fam.named_weights(model, name, str(weights))
        else:
            raise WeightsError(f"--weights '{weights}' is not a file, and '{name}' has no weights known by name; "
                               "pass a checkpoint file")
    model.eval()
    return Seed(spec, model)
