"""Checkpoint loading: always ``weights_only=True``, with precise mismatch errors."""

from __future__ import annotations

import re
import warnings
import zipfile
from collections import OrderedDict
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
    if path.is_dir():
        raise WeightsError(f"--weights '{path}' is a folder; pass the checkpoint file inside it")
    if not path.is_file():
        raise WeightsError(f"checkpoint '{path}' does not exist; pass --weights with a readable file")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notice means nothing to a user
            warnings.simplefilter("ignore", UserWarning)
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler raise anything (IndexError,
        # KeyError, struct.error, MemoryError...); weights_only=True means no code ran, so every failure is bad input
        raise WeightsError(f"'{path}' {_why_unloadable(path, exc)}; save weights with "
                           "torch.save(model.state_dict(), path)") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"'{path}' holds no state dict of tensors; expected a state dict or a dict with 'state_dict'"
        )
    out: dict[str, torch.Tensor] = OrderedDict((_strip(k), v) for k, v in obj.items())
    bad = next((k for k, v in out.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # every candidate would fail its masked-seed check with "nan": say it once, up front
        t = out[bad]
        count = int((~torch.isfinite(t)).sum())
        raise WeightsError(f"'{path}' holds non-finite weights: tensor '{bad}' has {count} of {t.numel()} values "
                           "NaN or infinite; use a checkpoint saved before training diverged")
    meta = getattr(obj, "_metadata", None)
    if meta is not None:  # module versions, which some modules read when loading (torchvision's MNASNet)
        out._metadata = OrderedDict((_strip(k), v) for k, v in meta.items())  # type: ignore[attr-defined]
    return out


def _strip(key: str) -> str:
    """DataParallel's ``module.`` prefix, removed."""
    return key[7:] if key.startswith("module.") else key if key != "module" else ""


def _why_unloadable(path: Path, exc: Exception) -> str:
    """What is wrong with a file torch.load refused, in words a user can act on."""
    text = str(exc)
    # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module x is blocked"
    blocked = re.search(r"[Uu]nsupported (?:global:? )?GLOBAL (\S+)", text)
    if blocked:
        return (f"holds a reference to code ({blocked.group(1)}) that safe (weights-only) loading refuses: scbp-edge "
                "never runs code from a model file, and reads plain state dicts only")
    if _looks_zipped(path):
        return "is a damaged torch.save archive (truncated or modified after saving)"
    if "central directory" in text or "zip archive" in text:
        return "is a truncated or damaged torch.save archive"
    return "is not a PyTorch checkpoint (neither a torch.save archive nor a pickle of tensors)"


def _looks_zipped(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError):  # a mangled end record (e.g. "multiple disks")
        return True


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
    merged = OrderedDict((k, state.get(k, v)) for k, v in expected.items())
    # Module versions travel with the weights (the model's own, where the checkpoint has none): modules
    # such as torchvision's MNASNet read them in their own _load_from_state_dict.
    merged._metadata = getattr(state, "_metadata", None) or getattr(expected, "_metadata", None)  # type: ignore
    model.load_state_dict(merged, strict=True)
