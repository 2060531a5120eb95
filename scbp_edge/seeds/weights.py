"""Checkpoint loading: always ``weights_only=True``, with precise mismatch errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scbp_edge.errors import WeightsError

_MAX_LISTED = 5


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file without running any pickled code.

    Accepts a plain state dict or a dict holding ``state_dict`` (or ``model``),
    and strips a ``module.`` prefix left by DataParallel.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint '{path}' does not exist; pass --weights with a readable file")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"'{path}' is not a loadable weights-only PyTorch checkpoint ({first[:160]}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"'{path}' holds no state dict of tensors; expected a state dict or a dict with 'state_dict'"
        )
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _is_bookkeeping(t: torch.Tensor) -> bool:
    # Integer buffers (BatchNorm's num_batches_tracked, option-A channel
    # indices) are architecture bookkeeping, not learned weights: a checkpoint
    # may omit them and the model's own values are correct.
    return not (t.is_floating_point() or t.is_complex())


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, naming missing/unexpected/mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k, v in expected.items() if k not in state and not _is_bookkeeping(v)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_listed(shapes)}")
    if problems:
        raise WeightsError(
            f"checkpoint {source} does not match the model ({'; '.join(problems)}); "
            "check --seed (and --num-classes) match the checkpoint"
        )
    merged = {k: state.get(k, v) for k, v in expected.items()}
    model.load_state_dict(merged, strict=True)
