"""The embedded default: a CIFAR-style ResNet-20 trained by the tool on scikit-learn's digits.

Needs no network and no ../shared.  The trained seed is cached, keyed by the
recipe, so later builds start at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from scbp_edge.data.digits import DIGITS_SIZE
from scbp_edge.resources import cache_dir

DEFAULT_SEED = "cifar-resnet20"


@dataclass(frozen=True)
class SeedRecipe:
    """How the embedded default seed is trained; its JSON names the cached file (a new recipe needs a new ``v``)."""

    seed: str = DEFAULT_SEED
    data: str = "digits"
    epochs: int = 12
    lr: float = 0.05
    batch: int = 64
    split_seed: int = 0
    v: int = 2


RECIPE = SeedRecipe()
DIGITS_MEAN = (0.5,)
DIGITS_STD = (0.5,)


def cached_seed_path() -> Path:
    """Where the trained default seed is cached (it may not exist yet)."""
    key = hashlib.sha256(json.dumps(asdict(RECIPE), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"digits-{DEFAULT_SEED}-{key}.pt"


def default_seed_weights(progress=None) -> Path:
    """Path of the trained default seed, training it (about 20 s on 2 cores) if not cached."""
    path = cached_seed_path()
    if path.is_file():
        return path
    from scbp_edge.accuracy import train
    from scbp_edge.data import split_val
    from scbp_edge.data.digits import load_digits_split
    from scbp_edge.seeds.cifar_resnet import CifarResNet

    torch.manual_seed(RECIPE.split_seed)
    train_set, _ = load_digits_split(RECIPE.split_seed)
    train_set, _val = split_val(train_set, 0.1, RECIPE.split_seed)  # val stays unseen for the proxy
    x, y = train_set.tensors(DIGITS_MEAN, DIGITS_STD)
    model = CifarResNet(20, 10, in_channels=1)
    # No warm-up: the recipe the cached seeds were trained with (a new recipe needs a new "v")
    train(model, x, y, epochs=RECIPE.epochs, lr=RECIPE.lr, batch=RECIPE.batch, warmup=0.0, on_epoch=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)  # atomic: a killed training never leaves a half-written cache
    return path


DEFAULT_INPUT = (1, DIGITS_SIZE, DIGITS_SIZE)
