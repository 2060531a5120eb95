"""Residual writers: the convolutions whose (normalised) output is added to a shortcut, found in the autograd graph.

A pruned network's residual stream drifts from the seed's block by block.  A
convolution fitted to the seed's output of that same convolution cannot undo
the drift; the last convolution of a residual branch can, when it is fitted to
the seed's value of the *sum* minus the pruned network's own shortcut there
(He et al. 2017, the multi-branch case).  This module finds those convolutions
from one traced forward, not from layer names:

* every module's input and output are tagged with the autograd node that made them;
* each add node of the graph is looked at: an operand made by a convolution, or
  by a BatchNorm whose input a convolution made, is a branch; the other operand
  is the shortcut, which must be a value some module takes in or gives out, so
  the solver can read it in the pruned network;
* a shortcut made after its writer runs by a parameter-free module (a
  subsample-and-zero-pad shortcut, say) is read as that module applied to its
  input, which exists before;
* where both operands are branches (torchvision's downsampling blocks: conv2 and
  the downsample conv), the convolution that runs last writes: the other
  branch's value already exists when it is solved, in forward order.

A network with no residual add has no writers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from scbp_edge.derive.relu import Gate

_NORMS = (nn.BatchNorm2d,)


@dataclass(frozen=True)
class Writer:
    """One residual writer: its conv, the BatchNorm between it and the add (or None), and where the shortcut is read.

    ``shortcut`` is a module name; ``shortcut_is_input`` says whether the value is
    that module's first input (its pre-forward) or its output; ``via`` names a
    parameter-free module applied to that value to give the add's operand.
    """

    conv: str
    norm: str | None
    shortcut: str
    shortcut_is_input: bool
    via: str | None = None  # a parameter-free module the value passes through before the add
    relu: bool = False  # the add's sum feeds only a ReLU


@dataclass
class _Tag:
    name: str
    is_input: bool
    order: int  # when the value existed: the module's start (input) or its end (output)


def find_writers(model: nn.Module, example: torch.Tensor) -> dict[str, Writer]:
    """The residual writers of ``model`` by conv name (see the module docstring); ``example`` is one input batch."""
    return trace_graph(model, example)[0]


def trace_graph(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, Writer], dict[str, str], set[str]]:
    """The residual writers; each convolution whose output feeds only a BatchNorm (conv name -> norm name); and
    those of them whose norm's output feeds only a ReLU."""
    mods = dict(model.named_modules())
    tags: dict[int, list[_Tag]] = {}
    calls: dict[str, int] = {}
    starts: dict[str, int] = {}
    clock = [0]
    keep_alive: list[torch.Tensor] = []  # grad_fn ids stay unique only while their tensors live

    def tag(t, name: str, is_input: bool) -> None:
        if isinstance(t, torch.Tensor) and t.grad_fn is not None:
            keep_alive.append(t)
            tags.setdefault(id(t.grad_fn), []).append(_Tag(name, is_input, clock[0]))

    def pre(name: str):
        def hook(_m, args) -> None:
            clock[0] += 1
            calls[name] = calls.get(name, 0) + 1
            starts.setdefault(name, clock[0])
            if args:
                tag(args[0], name, True)
        return hook

    def post(name: str):
        def hook(_m, _args, out) -> None:
            clock[0] += 1
            tag(out, name, False)
        return hook

    handles = [h for n, m in mods.items() if n for h in (m.register_forward_pre_hook(pre(n)),
                                                          m.register_forward_hook(post(n)))]
    was = model.training
    try:
        model.eval()
        with torch.enable_grad():
            out = model(example)
        out = out if isinstance(out, torch.Tensor) else out[0]
        return _walk(out.grad_fn, tags, mods, calls, starts)
    finally:
        for h in handles:
            h.remove()
        model.train(was)


def _walk(root, tags: dict[int, list[_Tag]], mods: dict[str, nn.Module], calls: dict[str, int],
          starts: dict[str, int]) -> tuple[dict[str, Writer], dict[str, str], set[str]]:
    """Every add node reachable from ``root`` turned into a writer where it is one; every conv -> BatchNorm pair."""
    writers: dict[str, Writer] = {}
    norms: dict[str, str] = {}
    relu_inputs: set[int] = set()  # nodes a ReLU reads
    adds: dict[str, int] = {}  # writer -> its add node
    readers: dict[int, int] = {}  # node -> how many nodes read it
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        inputs = [f for f, _ in node.next_functions]
        for f in inputs:
            if f is not None:
                readers[id(f)] = readers.get(id(f), 0) + 1
        stack.extend(inputs)
        if node.name().startswith("AddBackward") and len(inputs) == 2 and all(f is not None for f in inputs):
            w = _writer(inputs, tags, mods, calls, starts)
            if w is not None:
                writers[w.conv], adds[w.conv] = w, id(node)
        if node.name().startswith("ReluBackward") and inputs and inputs[0] is not None:
            relu_inputs.add(id(inputs[0]))
        branch = _branch(node, tags, mods)
        if branch is not None and branch[1] is not None:
            norms[branch[0]] = branch[1]
    # a conv whose output something else reads too cannot be rescaled behind its norm's back
    once = {c: n for c, n in norms.items() if calls.get(c) == 1 and calls.get(n) == 1}
    once = {c: n for c, n in once.items() if all(readers.get(k, 0) <= 1 for k in _outputs(c, tags))}
    # conv -> BatchNorm -> ReLU, the norm's output read by the ReLU alone: below zero, any value is the same value
    gated = {c for c, n in once.items() if (outs := _outputs(n, tags))
             and all(k in relu_inputs and readers.get(k, 0) == 1 for k in outs)}
    writers = {c: replace(w, relu=adds[c] in relu_inputs and readers.get(adds[c], 0) == 1) for c, w in writers.items()}
    return writers, once, gated


def _outputs(name: str, tags: dict[int, list[_Tag]]) -> list[int]:
    return [k for k, ts in tags.items() if any(t.name == name and not t.is_input for t in ts)]


def _branch(node, tags: dict[int, list[_Tag]], mods: dict[str, nn.Module]) -> tuple[str, str | None] | None:
    """(conv, norm or None) where ``node`` is a convolution's output, or a BatchNorm's of a convolution's output."""
    names = [t.name for t in tags.get(id(node), []) if not t.is_input]
    conv = next((n for n in names if type(mods[n]) is nn.Conv2d), None)
    if conv is not None:
        return conv, None
    norm = next((n for n in names if type(mods[n]) in _NORMS and mods[n].affine), None)
    if norm is None or "BatchNorm" not in node.name():
        return None
    feed = node.next_functions[0][0]
    inner = [t.name for t in tags.get(id(feed), []) if not t.is_input]
    conv = next((n for n in inner if type(mods[n]) is nn.Conv2d), None)
    return (conv, norm) if conv is not None else None


def _writer(inputs: list, tags: dict[int, list[_Tag]], mods: dict[str, nn.Module], calls: dict[str, int],
            starts: dict[str, int]) -> Writer | None:
    branches = [_branch(f, tags, mods) for f in inputs]
    order = [i for i in (0, 1) if branches[i] is not None]
    if not order:
        return None
    # the writer is the branch whose conv starts last; the other operand must exist before that start
    i = max(order, key=lambda k: starts[branches[k][0]])
    conv, norm = branches[i]
    if calls.get(conv, 0) != 1 or (norm is not None and calls.get(norm, 0) != 1):
        return None  # a module run twice: its sampled value would be ambiguous
    first = _ready(id(inputs[1 - i]), tags, calls, starts[conv])
    if first is not None:
        return Writer(conv, norm, first.name, first.is_input)
    for t in tags.get(id(inputs[1 - i]), []):  # made later, by a parameter-free module from an earlier value
        m = mods[t.name]
        # no parameters: nothing in it is re-solved, so applying it again at the writer gives the add's operand
        if t.is_input or calls.get(t.name, 0) != 1 or any(True for _ in m.parameters()):
            continue
        src = next((_ready(k, tags, calls, starts[conv]) for k, ts in tags.items()
                    if any(u.name == t.name and u.is_input for u in ts)), None)
        if src is not None:
            return Writer(conv, norm, src.name, src.is_input, via=t.name)
    return None  # the shortcut is no module's input or output, or is made after the writer runs


def _ready(node: int, tags: dict[int, list[_Tag]], calls: dict[str, int], before: int) -> _Tag | None:
    """The earliest single-call module input or output holding value ``node`` before clock ``before``, or None."""
    ready = [t for t in tags.get(node, []) if calls.get(t.name, 0) == 1 and t.order < before]
    return min(ready, key=lambda t: t.order) if ready else None


def sampler(site, bounds: list[int], sink: list[torch.Tensor]):
    """A function that appends a 4-d value's rows at ``site``'s sampled positions in the batch of images
    ``bounds`` = [first, end) (a list the caller moves from batch to batch)."""

    def take(t: torch.Tensor) -> None:
        sel = (site.n >= bounds[0]) & (site.n < bounds[1])
        sink.append(t[site.n[sel] - bounds[0], :, site.h[sel], site.w[sel]].detach())
    return take


class StreamTaps:
    """The pruned network's shortcut values at each writer's sampled positions, read during the solve pass.

    The shortcut exists before its writer runs (:func:`find_writers` checks it),
    so the writer's pre-forward solve finds it here and fits the seed's sum minus
    it, mapped back through the BatchNorm that follows the writer.
    """

    def __init__(self, model: nn.Module, writers: dict[str, Writer], sites: dict, images: int) -> None:
        mods = dict(model.named_modules())
        self.values: dict[str, list[torch.Tensor]] = {n: [] for n in writers}
        self.norms = {n: mods.get(w.norm) if w.norm else None for n, w in writers.items()}
        self.relu = {n: w.relu for n, w in writers.items()}
        bounds = [0, images]
        self.handles = [self.tap(mods[w.shortcut], w.shortcut_is_input, sampler(sites[n], bounds, self.values[n]),
                                 mods.get(w.via) if w.via else None)
                        for n, w in writers.items() if w.shortcut in mods and (not w.via or w.via in mods)]

    @staticmethod
    def tap(module: nn.Module, is_input: bool, take, via: nn.Module | None = None):
        """Hook ``module`` so that ``take`` sees its first input (``is_input``) or its output, through ``via``."""

        def give(t) -> None:
            if isinstance(t, torch.Tensor) and via is not None:
                with torch.no_grad():
                    t = via(t)
            if isinstance(t, torch.Tensor) and t.dim() == 4:
                take(t)
        if is_input:
            return module.register_forward_pre_hook(lambda _m, args: give(args[0] if args else None))
        return module.register_forward_hook(lambda _m, _a, out: give(out))

    def target(self, name: str, stream: torch.Tensor) -> tuple[torch.Tensor, Gate | None] | None:
        """What writer ``name``'s conv should output: (seed sum - own shortcut) through the inverse BN, and where
        a ReLU after the add cuts in those units (the value that makes the sum zero; None: no ReLU); None: no tap."""
        got = self.values.get(name)
        if not got or got[0].shape != stream.shape:
            return None
        short = got[0]
        norm = self.norms.get(name)
        if norm is None:
            return stream - short, ((-short, torch.ones(short.shape[1], dtype=torch.bool)) if self.relu[name] else None)
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        floor = 1e-3 * scale.abs().max().clamp(min=1e-12)  # a near-zero gain: that channel barely matters
        scale = torch.where(scale.abs() < floor, floor * torch.where(scale < 0, -1.0, 1.0), scale)

        def back(v: torch.Tensor) -> torch.Tensor:
            return (v - norm.bias.detach()) / scale + norm.running_mean

        return back(stream - short), ((back(-short), scale > 0) if self.relu[name] else None)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
