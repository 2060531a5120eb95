"""Accuracy: evaluation, adaptive-BN proxy and short training loops (CPU or CUDA)."""

from __future__ import annotations

import torch
from torch import nn


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    dev = _device()
    model = model.to(dev).eval()
    correct = 0
    for i in range(0, len(x), batch):
        pred = model(x[i : i + batch].to(dev)).argmax(1).cpu()
        correct += int((pred == y[i : i + batch]).sum())
    model.cpu()
    return 100.0 * correct / max(1, len(x))


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


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float = 0.05,
    batch: int = 64,
    seed: int = 0,
    augment: bool = True,
    teacher: nn.Module | None = None,
    on_epoch=None,
    channels_last: bool = True,
    bf16: bool | None = None,
) -> nn.Module:
    """SGD + cosine schedule, per-image random shifts, optional distillation from ``teacher``.

    ``channels_last`` and ``bf16`` (autocast on CPUs with native bf16, on
    CUDA always when asked; ``None``: where the CPU has it) only change speed;
    benchmarks/results/train_speed.md has their measured images/s and accuracy.
    """
    dev = _device()
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt).train()
    if teacher is not None:
        teacher = teacher.to(dev, memory_format=fmt).eval()
    use_bf16 = bf16_supported() if bf16 is None else bf16
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = _augment(xb, gen)
            xb, yb = xb.to(dev).contiguous(memory_format=fmt), yb.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
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
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch)
    # A short fine-tune leaves BN running stats dominated by the pre-training
    # values (momentum 0.1 over few batches); re-estimate them on clean inputs,
    # drawn at random: a split read from class folders is sorted by class.
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:1024]
    model = model.to(memory_format=torch.contiguous_format)
    return adapt_bn(model.cpu(), x[pick])


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


def _augment(xb: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Each image shifted by its own random offset of up to ``pad`` pixels (a crop of the zero-padded image).

    No flips: a left/right arrow, a mirrored digit or a traffic sign would change class.
    """
    n, c, h, w = xb.shape
    padded = nn.functional.pad(xb, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # n, h, 1
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # n, 1, w
    out = padded[torch.arange(n)[:, None, None], :, rows, cols]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


def evaluate_onnx(model_bytes: bytes, x: torch.Tensor, y: torch.Tensor, threads: int = 0) -> float:
    """Top-1 accuracy (percent) of an ONNX model (fp32, fp16 or QDQ int8) run by ONNX Runtime on the CPU.

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
    correct = 0
    for i in range(0, len(xs), step):
        xb = xs[i : i + step]
        n = len(xb)
        if fixed and n < fixed:  # a fixed batch size: pad the last batch, score only the real images
            xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - n, 0)])
        out = sess.run(None, {inp.name: xb})[0][:n]
        correct += int((out.argmax(1) == ys[i : i + n]).sum())
    return 100.0 * correct / max(1, len(xs))
