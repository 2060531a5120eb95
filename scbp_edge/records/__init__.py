"""Typed records for what crosses a stage, a task, the store and the report, with one JSON codec.

``measurement`` holds what profiling produces; ``candidate`` a run store row;
``report`` ranking points, the selection, its card and report.json. Every
record encodes to the JSON the project always wrote and decodes from it
(``codec``), so older run directories still open.
"""

from scbp_edge.records.candidate import (
    CandidateRow,
    OnnxArtifact,
    Proxy,
    SeedJudgement,
    StaticCosts,
    Status,
    TrainingResult,
    seed_judgement,
)
from scbp_edge.records.codec import compact, decode, encode, legacy, spread
from scbp_edge.records.config import BuildConfig, Constraints, SeedOptions
from scbp_edge.records.measurement import (
    BUSY_SHARE,
    MIN_QUIET_ROUNDS,
    Batched,
    Energy,
    LatencyStats,
    Measurement,
    Paired,
)
from scbp_edge.records.reconstruction import Reconstruction
from scbp_edge.records.report import (
    BudgetResult,
    Card,
    ClassifierSwap,
    DataSummary,
    FailedCandidate,
    FlopsDisagreement,
    MeasureBudget,
    RankingPoint,
    Report,
    RunFacts,
    Selection,
    TrainedRow,
    TrainedSummary,
    TrainingPlan,
    TrainingState,
    Undecided,
    WeightsSummary,
    config_text,
)
from scbp_edge.records.run import RunManifest, RunProgress, TeacherChoice

__all__ = [
    "BUSY_SHARE", "MIN_QUIET_ROUNDS", "Batched", "BudgetResult", "BuildConfig", "CandidateRow", "Card",
    "ClassifierSwap", "Constraints", "DataSummary", "Energy", "FailedCandidate", "FlopsDisagreement",
    "LatencyStats", "MeasureBudget", "Measurement", "OnnxArtifact", "Paired", "Proxy", "RankingPoint",
    "Reconstruction", "Report", "RunFacts", "RunManifest", "RunProgress", "SeedJudgement", "SeedOptions",
    "Selection", "StaticCosts", "Status", "TeacherChoice", "TrainedRow", "TrainedSummary", "TrainingPlan",
    "TrainingResult", "TrainingState", "Undecided", "WeightsSummary", "compact", "config_text", "decode", "encode",
    "legacy", "seed_judgement", "spread",
]
