"""torchvision's classifiers: the ``torchvision`` seed family, with its named weights (``--weights IMAGENET1K_V1``)."""

from __future__ import annotations

import torchvision
from torch import nn

from scbp_edge.errors import SeedError, WeightsError
from scbp_edge.seeds.family import SeedFamily
from scbp_edge.seeds.weights import apply_state_dict


def _build(name: str, classes: int, channels: int) -> nn.Module:
    if channels != 3:
        raise SeedError(f"seed '{name}' takes 3 input channels, not {channels}")
    return torchvision.models.get_model(name, weights=None, num_classes=classes)


def _named_weights(model: nn.Module, name: str, weight_name: str) -> None:
    """torchvision's own weights by name; offline, the message says where to fetch the file."""
    try:
        weights = torchvision.models.get_model_weights(name)[weight_name]
    except (KeyError, ValueError):
        raise WeightsError(f"'{weight_name}' is neither a file nor a torchvision weight name of '{name}'") from None
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:
        raise WeightsError(
            f"cannot download {name} {weight_name} ({exc.__class__.__name__}: the machine looks offline); "
            f"download {weights.url} elsewhere and pass --weights path/to/file.pth"
        ) from None
    apply_state_dict(model, state, f"{name} {weight_name}")


FAMILY = SeedFamily(
    name="torchvision",
    seeds=tuple(sorted(torchvision.models.list_models(module=torchvision.models))),
    num_classes=1000,
    input_shape=(3, 224, 224),
    build=_build,
    named_weights=_named_weights,
)
