"""Few-shot refinement: after the closed-form solve, distil the pruned network from its seed on the calibration images.

The per-layer solve (derive/reconstruct.py) fits each layer linearly, given its
own input; what it cannot represent stays (about half of a layer's output at a
1.5x network, however many images it sees: benchmarks/results/calib_sweep_*).
A few dozen Adam steps on the same unlabeled calibration images, matching the
seed's softened outputs end to end (knowledge distillation as in FSKD, Li et
al. 2020, which fits a pruned network from a few hundred images), move every
layer at once toward what the network as a whole must reproduce.  No labels
are used, only the seed's outputs, so it is still reconstruction, not training.

BatchNorm statistics stay frozen (eval mode): a batch of 128 calibration
images would estimate them worse than the seed's own.  Every ``HOLDOUT``-th
image is held out, and the solved weights come back if the held-out
distillation loss rose beyond ``MAX_RISE`` times its value before.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from scbp_edge.records.reconstruction import Refined

STEPS = 50  # Adam steps of ``BATCH`` images; the ablation is benchmarks/results/reconstruct_refine_*.md
LR = 1e-3
BATCH = 128
TEMPERATURE = 4.0
HOLDOUT = 5
# The refined weights come back out when the held-out distillation loss rose more than this (or is not finite):
# a guard against a diverged refinement, not a selection.  On a seed that has memorised its training images, that
# loss on held-out training images rose 4-11 % in refinements that raised test top-1 by 1.4-2.1 points
# (a 20-layer residual seed's 1.25x pick), so a strict "must fall" threw good refinements away.
MAX_RISE = 1.25
MIN_STEPS = 5  # under a time bound, fewer steps than this are not worth taking


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    t = TEMPERATURE
    return F.kl_div(F.log_softmax(out / t, 1), F.softmax(target / t, 1), reduction="batchmean") * t * t


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``model``'s outputs on ``x`` in batches; None unless each is one (batch x classes) tensor."""
    parts = [model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    if not all(isinstance(o, torch.Tensor) and o.dim() == 2 for o in parts):
        return None
    return torch.cat(parts)


def refine(model: nn.Module, seed: nn.Module, x: torch.Tensor, steps: int = STEPS, lr: float = LR,
           seconds: float | None = None, sample_seed: int = 0) -> Refined | None:
    """Distil ``model`` from ``seed`` on images ``x`` for ``steps`` Adam steps, in place (see the module docstring).

    ``seconds``: a bound on the whole refinement; the first step's time, with
    what went before it, caps the steps (fewer than ``MIN_STEPS``: none, and
    the record says so with ``steps=0``).  Images are flipped left-right at
    random (the seed's outputs on both forms are computed once).  Returns None
    where it cannot run: fewer than two held-out images, or a model whose
    output is not one (batch x classes) tensor.
    """
    start = time.perf_counter()
    held, fit = x[::HOLDOUT], x[[i for i in range(len(x)) if i % HOLDOUT]]
    if len(held) < 2 or len(fit) < 2:
        return None
    model.eval()
    seed.eval()
    own, held_t = _outputs(model, held), _outputs(seed, held)
    if own is None or held_t is None:
        return None
    flips = x.dim() == 4  # images: a mirrored image is as valid an input as the image
    fit_t = _outputs(seed, fit)
    flip_t = _outputs(seed, fit.flip(3)) if flips else fit_t
    assert fit_t is not None and flip_t is not None  # the seed answered the held-out images in the same form
    before = float(_loss(own, held_t))
    gen = torch.Generator().manual_seed(sample_seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(fit), (min(BATCH, len(fit)),), generator=gen)
        flip = (torch.rand(len(idx), generator=gen) < 0.5) if flips else torch.zeros(len(idx), dtype=torch.bool)
        xb = torch.where(flip[:, None, None, None], fit[idx].flip(3), fit[idx]) if flips else fit[idx]
        return xb, torch.where(flip[:, None], flip_t[idx], fit_t[idx])

    saved = copy.deepcopy(model.state_dict())
    params = [p for p in model.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = None
    with torch.enable_grad():
        i = 0
        while i < steps:
            t = time.perf_counter()
            xb, target = batch()
            loss = _loss(model(xb), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sched is None:  # the first step's cost (before its update) bounds the count
                if seconds is not None:
                    left = seconds - (time.perf_counter() - start)
                    steps = min(steps, int(left / (time.perf_counter() - t)))
                    if steps < MIN_STEPS:
                        steps = 0
                        break
                sched = _schedule(opt, steps)
            opt.step()
            sched.step()
            i += 1
    for p in params:
        p.grad = None
    if steps == 0:  # stopped before the first update: the weights are the solved ones
        return Refined(0, False, round(before, 5), round(before, 5), round(time.perf_counter() - start, 3))
    after_out = _outputs(model, held)
    after = float(_loss(after_out, held_t)) if after_out is not None else math.nan
    kept = math.isfinite(after) and after <= MAX_RISE * before
    if not kept:
        model.load_state_dict(saved)
    return Refined(steps, kept, round(before, 5), round(after, 5) if math.isfinite(after) else None,
                   round(time.perf_counter() - start, 3))


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm up, then a cosine decay: Adam's first full steps on a solved network throw it off (20 steps at 1e-3
    without a warm-up scored below the solve), and the last steps should settle rather than jump."""
    warm = max(1, steps // 5)

    def factor(i: int) -> float:
        return (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
