"""Why Torch-Pruning could not trace a seed, said in one line that names where in the network it stopped."""

from __future__ import annotations

import re

from torch import nn


def trace_failure(exc: Exception, unhandled: list[str], names: dict[nn.Module, str]) -> str:
    """What stopped Torch-Pruning's trace, named from where it failed (not just its exception)."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        node = next((frame.f_locals[k] for k in ("node", "reshape_node") if k in frame.f_locals), None)
        if frame.f_code.co_name.startswith("update_") and node is not None:
            where = (frame.f_code.co_name.removeprefix("update_").removesuffix("_index_mapping"),
                     str(getattr(node, "name", node)).split("(")[0])
        tb = tb.tb_next
    if where and where[0] in ("reshape", "split", "concat", "slice"):
        what = {"reshape": "reshapes the channel axis (a channel shuffle: view/transpose/view)",
                "split": "splits channels", "concat": "concatenates channels", "slice": "slices channels"}[where[0]]
        return (f"this seed cannot be pruned: at {where[1]} it {what}, which Torch-Pruning cannot follow channel "
                "by channel; choose a seed without it (scbp-edge seeds), or a user factory whose blocks avoid it")
    at = _failed_at(exc, names)
    if unhandled:
        return (f"Torch-Pruning could not trace this seed{at} ({type(exc).__name__}: {str(exc)[:120]}); layers it "
                f"has no pruner for: {', '.join(unhandled[:5])}")
    return f"Torch-Pruning could not trace this seed{at} ({type(exc).__name__}: {str(exc)[:160]})"


def _failed_at(exc: Exception, names: dict[nn.Module, str]) -> str:
    """Where Torch-Pruning's trace failed: the graph op it was at and the nearest layer feeding it, by path and type.

    Its shape inference and index mapping work on graph nodes (a concat, a split) that have no module path of
    their own, so the line names the layer whose output reaches that op first.
    """
    tb, node = exc.__traceback__, None
    while tb is not None:  # the innermost frame that holds a graph node
        for value in tb.tb_frame.f_locals.values():
            if hasattr(value, "inputs") and hasattr(value, "grad_fn") and hasattr(value, "module"):
                node = value
        tb = tb.tb_next
    if node is None:
        return ""
    op = str(getattr(node, "name", node)).split("(")[0]  # Torch-Pruning's op nodes: _SplitOp_6, _Slice_27, ...
    kind = re.sub(r"^_|Op$", "", re.sub(r"_\d+$", "", op)).lower() or "an op"
    op = f"a {kind} ({op})"
    queue, seen = [node], set()
    while queue:  # breadth first towards the input: the nearest named layer
        n = queue.pop(0)
        if id(n) in seen:
            continue
        seen.add(id(n))
        name = names.get(n.module) if isinstance(n.module, nn.Module) else None
        if name:
            return f" at {op} fed by '{name}' ({type(n.module).__name__})"
        queue.extend(n.inputs)
    return f" at {op}"
