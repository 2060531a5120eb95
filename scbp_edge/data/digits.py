"""The embedded default dataset: scikit-learn's handwritten digits (offline, shipped in the wheel)."""

from __future__ import annotations

import numpy as np

from scbp_edge.data import ImageSet

DIGITS_SIZE = 16


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> tuple[ImageSet, ImageSet]:
    """1,797 8x8 grey digits upscaled to 16x16, split (seeded, stratified) into train and test."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    imgs = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        test_idx += rng.choice(idx, int(round(len(idx) * test_fraction)), replace=False).tolist()
    mask = np.zeros(len(labels), bool)
    mask[test_idx] = True
    classes = [str(i) for i in range(10)]
    return ImageSet(imgs[~mask], labels[~mask], classes), ImageSet(imgs[mask], labels[mask], classes)
