"""timm's CNNs: the ``timm`` seed family, named ``timm-NAME`` (``--seed timm-cspdarknet53``).

The prefix keeps timm's names apart from torchvision's (both have ``resnet18``).
timm is optional (``pip install 'scbp-edge[timm]'``) and imported only when a
``timm-`` seed is asked for: without it such a seed is refused in one line that
says what to install. Networks are built with random weights; a trained
checkpoint comes with ``--weights FILE`` (timm's own downloads need a network
connection, which robots' build machines often lack).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache

from torch import nn

from scbp_edge.errors import SeedError
from scbp_edge.seeds.family import SeedFamily

PREFIX = "timm-"  # not "/": seed names become file and folder names


@cache
def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


class _Names(Sequence[str]):
    """Every ``timm-NAME`` timm can build, looked up lazily (listing them imports timm)."""

    def __contains__(self, name: object) -> bool:
        # every timm- name is this family's: building says what is wrong (no timm, no such model) in one line
        return isinstance(name, str) and name.startswith(PREFIX)

    def _all(self) -> list[str]:
        timm = _timm()
        return [PREFIX + n for n in timm.list_models()] if timm is not None else []

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, i):  # type: ignore[override]
        return self._all()[i]


def _build(name: str, classes: int, channels: int) -> nn.Module:
    timm = _timm()
    if timm is None:
        raise SeedError(f"seed '{name}' needs timm: pip install 'scbp-edge[timm]' (or pip install timm)")
    arch = name[len(PREFIX):]
    if not timm.is_model(arch):
        raise SeedError(f"timm has no model '{arch}' (timm.list_models() lists them)")
    return timm.create_model(arch, pretrained=False, num_classes=classes, in_chans=channels)


FAMILY = SeedFamily(
    name="timm",
    seeds=_Names(),  # type: ignore[arg-type]
    num_classes=1000,
    input_shape=(3, 224, 224),
    build=_build,
)
