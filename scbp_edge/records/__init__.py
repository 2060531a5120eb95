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
from scbp_edge.records.codec import compact, decode, encode, spread
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
    DataSummary,
    FailedCandidate,
    FlopsDisagreement,
    RankingPoint,
    Report,
    RunFacts,
    Selection,
    TrainedRow,
    TrainedSummary,
    Undecided,
    WeightsSummary,
    config_text,
)

__all__ = [
    "BUSY_SHARE", "Batched", "BudgetResult", "CandidateRow", "Card", "DataSummary", "Energy", "FailedCandidate",
    "FlopsDisagreement", "LatencyStats", "MIN_QUIET_ROUNDS", "Measurement", "OnnxArtifact", "Paired", "Proxy",
    "RankingPoint", "Reconstruction", "Report", "RunFacts", "SeedJudgement", "Selection", "StaticCosts", "Status",
    "TrainedRow", "TrainedSummary", "TrainingResult", "Undecided", "WeightsSummary", "compact", "config_text",
    "decode", "encode", "seed_judgement", "spread",
]
