"""What reconstruction did to one network: stored with the candidate, in derived-model files and in report.json.

The solver is derive/reconstruct.py; this record sits with the others so the
report reads it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scbp_edge.records.codec import spread, transient


@dataclass(frozen=True)
class Refined:
    """What the few-shot refinement after the solve did (derive/refine.py): held-out distillation loss, kept or not."""

    steps: int
    kept: bool  # False: the loss did not fall on the held-out images and the solved weights came back
    loss_before: float
    loss_after: float | None  # None: not finite (a diverged refinement)
    seconds: float


@dataclass(frozen=True)
class Reconstruction:
    """What reconstruction did to one network (stored with the candidate and in derived-model files)."""

    applied: bool
    reason: str = ""  # why not applied, e.g. "no data"
    images: int = 0
    layers: int = 0  # layers re-solved
    kept_l1: dict[str, str] = field(default_factory=dict)  # layer -> why it kept its inherited weights
    #: layers with fewer samples than unknowns, solved with a stronger ridge (callers say so once: see `notice`)
    strong_ridge: tuple[str, ...] = ()
    left: tuple[str, ...] = ()  # layers left inherited on purpose (the classifier head)
    error_before: float | None = None  # mean relative output error of the re-solved layers, on the calibration rows
    error_after: float | None = None
    seconds: float = 0.0
    #: residual writers fitted to the seed's residual sum minus the pruned network's own shortcut (derive/residual.py)
    residual: tuple[str, ...] = ()
    refined: Refined | None = None  # the few-shot refinement after the solve, where one ran
    #: keys a later or earlier version stored beside these
    rest: dict[str, Any] = spread()
    #: layer -> (relative output error before, after) on the calibration rows; for analysis, never stored (one
    #: pair per layer would swell every stored candidate and report)
    per_layer: dict[str, tuple[float, float]] = transient(dict)

    @classmethod
    def skipped(cls, reason: str) -> Reconstruction:
        return cls(applied=False, reason=reason)

    def notice(self) -> str | None:
        """The one line a user should read about this reconstruction, or None."""
        parts = []
        if self.kept_l1:
            name, why = next(iter(self.kept_l1.items()))
            parts.append(f"{len(self.kept_l1)} layer(s) kept their inherited weights (e.g. {name}: {why})")
        if self.strong_ridge:
            parts.append(f"{len(self.strong_ridge)} layer(s) had fewer calibration samples than unknowns (e.g. "
                         f"{self.strong_ridge[0]}) and were solved with a stronger ridge; more --calib-images fits "
                         "them better")
        return "; ".join(parts) or None
