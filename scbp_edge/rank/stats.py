"""How sure an accuracy figure is: intervals, the paired comparison with the seed, and the accuracy-limit rule.

Test accuracies are measured on a finite test split, so each carries the
number of images and a 95 % Wilson interval.  A candidate and the seed are
scored on the same images, so they are compared pairwise: only the images one
gets right and the other wrong carry information (exact McNemar test; an
Agresti-Min interval for the difference).

The accuracy-limit rule (``--max-accuracy-drop D``, default 1 pt): a candidate
meets the limit when its measured drop against the seed, on the same test
images, is at most D points.  Where the 95 % interval of that drop contains D,
the test split cannot tell whether the true drop is above or below the limit:
the verdict is then marked *undecided*, and the report names how many test
images would decide it.  No figure is hidden and no candidate is dropped on noise
without saying so.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion, in percent; None without images."""
    if n <= 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def pack(correct: Any) -> str:
    """A per-image right/wrong vector as compact text (base64 of packed bits) for the run store."""
    bits = np.packbits(np.asarray(correct, dtype=bool))
    return base64.b64encode(bits.tobytes()).decode()


def unpack(text: str, n: int) -> np.ndarray:
    """The vector :func:`pack` wrote, ``n`` images long."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


@dataclass(frozen=True)
class PairedAccuracy:
    """A candidate against the seed on the same ``n`` test images (differences in points, candidate minus seed)."""

    n: int
    seed_only: int  # images the seed got right and the candidate wrong
    candidate_only: int  # and the other way round
    diff_pt: float
    interval_pt: tuple[float, float]
    p_value: float  # exact McNemar: could the two be equally accurate?

    @property
    def distinguishable(self) -> bool:
        return self.p_value < 0.05

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedAccuracy:
        """A pairing as :meth:`to_dict` wrote it (a ranking point's ``vs_seed``)."""
        return cls(d["n"], d["seed_only"], d["candidate_only"], d["diff_pt"], tuple(d["interval_pt"]), d["p_value"])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval_pt"] = list(self.interval_pt)
        d["distinguishable"] = self.distinguishable
        return d


def paired(seed: np.ndarray, cand: np.ndarray) -> PairedAccuracy:
    """Compare per-image right/wrong vectors of the seed and a candidate on the same images."""
    from scipy.stats import binomtest

    if len(seed) != len(cand) or len(seed) == 0:
        raise ValueError(f"paired accuracy needs the same non-empty test images ({len(seed)} vs {len(cand)})")
    n = len(seed)
    b = int(np.sum(seed & ~cand))
    c = int(np.sum(~seed & cand))
    p = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5).pvalue)
    # Agresti-Min: half an image added to each of the four cells keeps the interval honest when few disagree
    b2, c2, n2 = b + 0.5, c + 0.5, n + 2.0
    d = (c2 - b2) / n2
    se = math.sqrt(max(0.0, (b2 + c2) / n2 - d * d) / n2)
    return PairedAccuracy(n, b, c, 100.0 * (c - b) / n, (100 * (d - Z95 * se), 100 * (d + Z95 * se)), p)


def images_to_decide(pair: PairedAccuracy, limit_pt: float) -> int | None:
    """Test images the same disagreement rate would need for the drop's 95 % interval to exclude the limit.

    None where the measured drop sits exactly on the limit (no test size decides it).
    """
    margin = abs(pair.diff_pt + limit_pt) / 100.0
    if margin == 0:
        return None
    rate = (pair.seed_only + pair.candidate_only + 1) / (pair.n + 2)  # per image, never 0
    d = pair.diff_pt / 100.0
    var = max(rate - d * d, 1e-12)
    return math.ceil(Z95 * Z95 * var / (margin * margin))


def undecided(pair: PairedAccuracy | None, limit_pt: float) -> bool:
    """The drop's 95 % interval contains the limit: this test split cannot tell which side the true drop is on."""
    if pair is None:
        return False
    lo, hi = pair.interval_pt
    return lo <= -limit_pt <= hi
