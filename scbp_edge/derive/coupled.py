"""Channels that Torch-Pruning can only remove together: classes within one group.

A ghost module concatenates a primary conv's output with a depthwise conv of
that same output, so channel ``i`` and channel ``i + n/2`` of the concatenation
share one primary filter: removing either removes both.  Torch-Pruning closes
every removal over that coupling, so a group told to drop 12 of 20 channels
chosen one by one can drop all 20 (timm's GhostNet came out with zero-width
convolutions).  Choosing whole classes keeps the plan's width.
"""

from __future__ import annotations

from typing import Any

import torch


def coupled_classes(dg: Any, layer: Any, n: int) -> list[list[int]] | None:
    """The group's channel indices as classes removed together, or None where every channel stands alone.

    ``dg`` is Torch-Pruning's dependency graph and ``layer`` the group's root
    (typed Any: only derive/tp_adapter.py imports torch_pruning).
    """
    handler = dg.get_pruner_of_module(layer).prune_out_channels
    full = dg.get_pruning_group(layer, handler, idxs=list(range(n)))
    # In an uncoupled group every member maps all n channels; a narrower member is shared by two or more.
    if all(len(set(int(i) for i in idxs)) == n for _, idxs in full):
        return None
    classes: list[list[int]] = []
    seen: set[int] = set()
    for j in range(n):
        if j in seen:
            continue
        group = dg.get_pruning_group(layer, handler, idxs=[j])
        members = sorted({int(i) for i in group[0][1]} | {j})  # the root's own indices after the closure
        seen.update(members)
        classes.append(members)
    return classes if any(len(c) > 1 for c in classes) else None


def split_classes(imp: torch.Tensor, classes: list[list[int]], k: int) -> tuple[list[int], list[int]]:
    """(kept, dropped) indices keeping the strongest whole classes until at least ``k`` channels stay.

    A class ranks by the mean importance of its channels; ties keep the earlier class (deterministic).
    """
    score = torch.tensor([float(imp[c].mean()) for c in classes])
    kept: list[int] = []
    for ci in torch.argsort(score, descending=True, stable=True).tolist():
        if len(kept) >= k:
            break
        kept.extend(classes[ci])
    keep = set(kept)
    return sorted(keep), [i for i in range(imp.numel()) if i not in keep]
