"""Derived-model files: architecture as data plus weights, never pickled code.

A file holds the seed spec, the segmentation's stem/head, the per-group kept
channel counts and the state dict.  Loading rebuilds the seed skeleton from its
spec, redoes the same surgery, then loads the weights strictly - so a file can
only ever describe a pruned built-in (or user-named) architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from scbp_edge.errors import ModelFileError
from scbp_edge.records import decode, encode
from scbp_edge.seeds import SeedSpec, build_model
from scbp_edge.seeds.weights import apply_state_dict, read_state_dict

FORMAT = "scbp-edge/derived-v1"


def save_derived(
    path: str | Path,
    model: nn.Module,
    spec: SeedSpec,
    *,
    ignored: list[str],
    keep: dict[str, int],
    ratios: list[float],
    candidate_id: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` with everything needed to rebuild it (see module docstring)."""
    return write_derived(path, model.state_dict(), spec, ignored=ignored, keep=keep, ratios=ratios,
                         candidate_id=candidate_id, extra=extra)


def write_derived(
    path: str | Path,
    state: dict[str, torch.Tensor],
    spec: SeedSpec,
    *,
    ignored: list[str],
    keep: dict[str, int],
    ratios: list[float],
    candidate_id: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Like :func:`save_derived`, from a state dict (e.g. one sent back by a remote worker).

    ``extra``: JSON-safe facts about the weights (how channels were chosen, what reconstruction did).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "seed": encode(spec),
        "ignored": list(ignored),
        "keep": dict(keep),
        "ratios": list(ratios),
        "candidate_id": candidate_id,
        **(extra or {}),
    }
    torch.save({"meta": meta, "state_dict": state}, path)
    return path


def load_derived(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a derived-model file written by :func:`save_derived`; returns (model, meta)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"derived model '{path}' does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ModelFileError(
            f"'{path}' is not a scbp-edge derived model ({type(exc).__name__}); "
            "create one with scbp-edge derive -o file.pt"
        ) from None
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"'{path}' is not a {FORMAT} file; create one with scbp-edge derive -o file.pt")
    from scbp_edge.derive.tp_adapter import PruningGraph

    spec = decode(SeedSpec, meta["seed"], "the file's seed")
    skeleton = build_model(spec)
    graph = PruningGraph(skeleton, spec.input_shape, meta["ignored"])
    model = graph.derive({k: int(v) for k, v in meta["keep"].items()})
    state = read_state_dict(path) if "state_dict" not in obj else obj["state_dict"]
    apply_state_dict(model, state, f"'{path}'")
    return model.eval(), meta
