"""The run ledger: what a build is (its manifest, written once) and how far it got (its progress).

The store keeps each field under its own key of the run database's ``meta``
table, with the JSON it always held there, so run directories written before
these records still open, resume and report. Encoding happens in the store
only (``RunStore.start``, ``RunStore.update_progress``); every other module
passes these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from scbp_edge.records.report import ClassifierSwap, DataSummary, MeasureBudget, RunFacts, TrainingPlan


@dataclass(frozen=True)
class RunManifest(RunFacts):
    """What the build is, written once as it starts; a resume replays it: the report's run facts, plus what makes
    two runs comparable (fingerprints) and the images per split.

    ``config`` is the ``BuildConfig`` as stored (``pipeline.config.stored_config`` reads it, older runs'
    missing fields included); target, runtime, seed and segmentation as their records encode.
    """

    fingerprints: dict[str, Any] = field(default_factory=dict)
    data: DataSummary | None = None

    def facts(self) -> RunFacts:
        """The report's ``run`` section: the manifest without the fields report.json keeps beside it."""
        return RunFacts(**{f.name: getattr(self, f.name) for f in fields(RunFacts)})


@dataclass(frozen=True)
class TeacherChoice:
    """Which teacher the pruned networks learnt from, and the validation top-1 that chose it."""

    chosen: str
    why: str | None = None
    validation_accuracy: dict[str, float | None] | None = None
    val_images: int | None = None


@dataclass(frozen=True)
class RunProgress:
    """What the build did so far, updated as it goes (``RunStore.update_progress``)."""

    training: TrainingPlan | None = None
    teacher: TeacherChoice | None = None
    classifier_replaced: ClassifierSwap | None = None  # pipeline.prepare.adapt_classifier's account
    budget: MeasureBudget | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per stage, summed over resumes
