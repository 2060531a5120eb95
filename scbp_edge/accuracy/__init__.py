"""Accuracy: evaluation, adaptive-BN proxy and short training loops (CPU or CUDA)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scbp_edge.records.task import TrainStats


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Which images the model classifies right (top-1), as a bool vector: paired comparisons need it per image."""
    dev = _device()
    model = model.to(dev).eval()
    right = [model(x[i : i + batch].to(dev)).argmax(1).cpu() == y[i : i + batch] for i in range(0, len(x), batch)]
    model.cpu()
    return torch.cat(right) if right else torch.zeros(0, dtype=torch.bool)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(correct(model, x, y, batch).sum()) / max(1, len(x))


@torch.no_grad()
def adapt_bn(model: nn.Module, x: torch.Tensor, batch: int = 64, augment: bool = False) -> nn.Module:
    """Re-estimate BatchNorm running statistics on ``x`` (adaptive BN); weights stay untouched.

    The images are shuffled first: the per-batch variances are averaged, so a
    batch of one class would miss the variance between classes.  ``augment``
    shifts each image by up to 2 pixels, the input distribution the network
    was trained on (and the one this tool fine-tunes with).
    """
    dev = _device()
    model = model.to(dev)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    gen = torch.Generator().manual_seed(0)
    x = x[torch.randperm(len(x), generator=gen)]
    model.train()
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        if augment:
            xb = _augment(xb, gen)
        model(xb.to(dev))
    return model.cpu().eval()


def bf16_supported() -> bool:
    """The CPU has native bf16 arithmetic (AVX512-BF16 or AMX): autocast to bf16 pays off only then."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


WARMUP = 0.05  # share of the steps over which the learning rate rises linearly (benchmarks/results/recipe.md)


PROBE_STEPS = 10  # with a time budget, train() times this many steps, then trains at least one more


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, teacher: nn.Module | None = None,
                 batch: int = 64, steps: int = 2) -> float:
    """Measured seconds of one training step of ``model`` as :func:`train` runs it (on a copy).

    One untimed step first (allocation, kernel choice), then the median of
    ``steps`` timed ones.  Used to share a time budget between networks so that
    each gets about the same number of epochs.
    """
    import copy
    import statistics
    import time

    dev = _device()
    net = copy.deepcopy(model).to(dev, memory_format=torch.channels_last).train()
    t = None if teacher is None else copy.deepcopy(teacher).to(dev, memory_format=torch.channels_last).eval()
    opt = torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9)
    xb = x[:batch].to(dev).contiguous(memory_format=torch.channels_last)
    yb = y[:batch].to(dev)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        _step(net, t, opt, xb, yb, bf16_supported(), dev)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear warm-up over ``warmup`` of them, then cosine to 0.

    ``warmup`` 0 is plain cosine from the first step (torch's CosineAnnealingLR).
    """
    import math

    rise = round(warmup * total)
    if step < rise:
        return (step + 1) / rise
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - rise) / max(1, total - rise))))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **options: Any) -> nn.Module:
    """:func:`fit` for callers that want only the trained model."""
    return fit(model, x, y, **options)[0]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: float,
    lr: float = 0.05,
    batch: int = 64,
    seed: int = 0,
    augment: bool = True,
    flip: bool = False,
    warmup: float = WARMUP,
    max_seconds: float | None = None,
    teacher: nn.Module | None = None,
    on_epoch=None,
    channels_last: bool = True,
    bf16: bool | None = None,
) -> tuple[nn.Module, TrainStats]:
    """SGD, linear warm-up then cosine to zero, per-image shifts (and flips), optional distillation from ``teacher``.

    Returns the trained model and what the fine-tune did (:class:`TrainStats`: the
    steps and epochs actually trained, the seconds they took).
    ``max_seconds``: a time budget instead of ``epochs``: the first steps are
    timed and the schedule is set to the steps that fit.  ``channels_last`` and
    ``bf16`` (autocast on CPUs with native bf16, on CUDA always when asked;
    ``None``: where the CPU has it) only change speed;
    benchmarks/results/train_speed.md has their measured images/s and accuracy.
    """
    import time

    dev = _device()
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt).train()
    if teacher is not None:
        teacher = teacher.to(dev, memory_format=fmt).eval()
    use_bf16 = bf16_supported() if bf16 is None else bf16
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    per_epoch = (len(x) + batch - 1) // batch
    plan = {"steps": max(1, round(epochs * per_epoch)) if max_seconds is None else 10 ** 9}

    # read at every step: a time budget may still change plan["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, plan["steps"], warmup))
    step, probe, start = 0, PROBE_STEPS, time.perf_counter()  # with a time budget, these steps are timed
    while step < plan["steps"]:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            if step >= plan["steps"]:
                break
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = _augment(xb, gen, flip=flip)
            _step(model, teacher, opt, xb.to(dev).contiguous(memory_format=fmt), yb.to(dev), use_bf16, dev)
            sched.step()
            step += 1
            if max_seconds is not None and step == probe:
                spent = time.perf_counter() - start
                plan["steps"] = max(probe + 1, int(max_seconds / (spent / probe)))
        if on_epoch is not None:
            on_epoch(step // per_epoch)
    stats = TrainStats(step, round(step / per_epoch, 2), round(time.perf_counter() - start, 1))
    # A short fine-tune leaves BN running stats dominated by the pre-training
    # values (momentum 0.1 over few batches); re-estimate them on clean inputs,
    # drawn at random: a split read from class folders is sorted by class.
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:1024]
    model = model.to(memory_format=torch.contiguous_format)
    return adapt_bn(model.cpu(), x[pick]), stats


def _step(model: nn.Module, teacher: nn.Module | None, opt, xb: torch.Tensor, yb: torch.Tensor, bf16: bool,
          dev: torch.device) -> None:
    """One SGD step: cross-entropy, plus temperature-4 distillation from ``teacher`` where given."""
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(xb)
        t = None
        if teacher is not None:
            with torch.no_grad():
                t = teacher(xb)
    loss = nn.functional.cross_entropy(logits.float(), yb)
    if t is not None:
        kd = nn.functional.kl_div(nn.functional.log_softmax(logits.float() / 4, 1),
                                  nn.functional.softmax(t.float() / 4, 1), reduction="batchmean")
        loss = 0.5 * loss + 0.5 * 16 * kd
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def keeps_fine_tune(as_it_came: float, fine_tuned: float) -> bool:
    """The seed reference's rule: keep the seed's fine-tune unless the seed as it came scored higher (a tie keeps it).

    The build judges the seed by it and distils pruned networks from the seed it kept; benchmarks call
    :func:`better_teacher` rather than restate it.
    """
    return not as_it_came > fine_tuned


def better_teacher(seed: nn.Module, tuned: nn.Module, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[nn.Module, dict[str, float]]:
    """The teacher the build would choose: the seed or its fine-tune, by top-1 on (``x``, ``y``), with both scores."""
    scores = {"seed": evaluate(seed, x, y), "fine-tuned seed": evaluate(tuned, x, y)}
    return (tuned if keeps_fine_tune(scores["seed"], scores["fine-tuned seed"]) else seed), scores


def distill_score(model: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor,
                  val_y: torch.Tensor, bn_x: torch.Tensor, *, steps: int = 200, batch: int = 64,
                  lr: float = 0.01) -> float:
    """Second-stage proxy: ``steps`` distillation steps from ``teacher``, then top-1 on the validation split.

    Adaptive BN alone underrates heavily pruned networks, which recover most of
    their accuracy within a few hundred steps; this proxy sees that recovery.
    Trains a copy: ``model`` is left as it was.
    """
    import copy

    model = adapt_bn(copy.deepcopy(model), bn_x)
    n = min(len(x), steps * batch)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
    torch.manual_seed(0)
    model = train(model, x[pick], y[pick], epochs=1, lr=lr, batch=batch, teacher=teacher)
    return evaluate(model, val_x, val_y)


def _augment(xb: torch.Tensor, gen: torch.Generator, pad: int = 2, flip: bool = False) -> torch.Tensor:
    """Each image shifted by its own random offset of up to ``pad`` pixels (a crop of the zero-padded image).

    Flips only where the user allows them (``--augment flip``): a left/right
    arrow, a mirrored digit or a traffic sign would change class.
    """
    n, c, h, w = xb.shape
    padded = nn.functional.pad(xb, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # n, h, 1
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # n, 1, w
    out = padded[torch.arange(n)[:, None, None], :, rows, cols]  # n, h, w, c
    out = out.permute(0, 3, 1, 2).contiguous()
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        out[mirror] = out[mirror].flip(3)
    return out


def evaluate_onnx(model_bytes: bytes, x: torch.Tensor, y: torch.Tensor, threads: int = 0) -> float:
    """Top-1 accuracy (percent) of an ONNX model; see :func:`correct_onnx`."""
    return 100.0 * float(correct_onnx(model_bytes, x, y, threads).sum()) / max(1, len(x))


def correct_onnx(model_bytes: bytes, x: torch.Tensor, y: torch.Tensor, threads: int = 0):
    """Per-image top-1 right/wrong (numpy bool) of an ONNX model (fp32, fp16 or QDQ int8) run by ONNX Runtime.

    The file evaluated is the file measured and shipped: a static-batch model
    runs one image at a time, a dynamic-batch one in batches of 256.
    """
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or 256
    xs, ys = x.numpy().astype(np.float32), y.numpy()
    right = []
    for i in range(0, len(xs), step):
        xb = xs[i : i + step]
        n = len(xb)
        if fixed and n < fixed:  # a fixed batch size: pad the last batch, score only the real images
            xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - n, 0)])
        out = sess.run(None, {inp.name: xb})[0][:n]
        right.append(out.argmax(1) == ys[i : i + n])
    return np.concatenate(right) if right else np.zeros(0, dtype=bool)
