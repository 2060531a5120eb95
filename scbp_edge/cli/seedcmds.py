"""Commands over one seed: seeds, inspect, search, derive.

Torch loads inside each command, not with this module: ``--help`` and the
refusal of a bad value elsewhere in the CLI never wait for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from scbp_edge.cli.common import (
    CalibImagesOpt,
    ClassesOpt,
    ConfigScopeOpt,
    CriterionOpt,
    DynamicBatchOpt,
    ExcludeOpt,
    InputOpt,
    JsonOpt,
    LimitOpt,
    MaxMacsOpt,
    MaxParamsOpt,
    MonotoneOpt,
    RatiosOpt,
    ReconstructOpt,
    RefineOpt,
    ResidualOpt,
    RoundOpt,
    SampleSeedOpt,
    ScopeOpt,
    SeedOpt,
    SegmentsOpt,
    TraceTimeoutOpt,
    WeightsOpt,
    console,
    emit_json,
    human,
    out,
    quiet_stdout,
)
from scbp_edge.records import SeedOptions, config_text, encode
from scbp_edge.records.config import check_seed_options
from scbp_edge.space import parse_config

if TYPE_CHECKING:
    from scbp_edge.api import Workbench


def seeds(json_out: bool = JsonOpt) -> None:
    """List built-in seed names."""
    from scbp_edge.seeds import known_seeds

    names = known_seeds()
    if json_out:
        emit_json(names)
    else:
        out.print("\n".join(names))


def inspect(
    seed: str = SeedOpt, weights: str | None = WeightsOpt, segments: str = SegmentsOpt,
    num_classes: int | None = ClassesOpt, input_size: int | None = InputOpt, json_out: bool = JsonOpt,
    trace_timeout: float | None = TraceTimeoutOpt,
) -> None:
    """Show the seed's segments: blocks, conv layers, channels, params, MACs."""
    opts = SeedOptions(seed, weights, num_classes, input_size, segments=segments, trace_timeout=trace_timeout)
    check_seed_options(opts)  # a bad value is one line before torch loads
    from scbp_edge.api import Workbench
    from scbp_edge.errors import ScbpError

    with console.status(f"tracing {seed}"):
        wb = Workbench(opts)
    seg = wb.segmentation
    try:  # listing segments needs only the segmentation; what pruning can do needs the analysis
        with console.status("analysing channel dependencies (Torch-Pruning)"):
            prunable = _prunable_groups(wb)
        analysis = None
    except ScbpError as exc:
        prunable, analysis = None, str(exc)
    if json_out:
        emit_json({"seed": encode(wb.seed.spec), "segmentation": encode(seg), "prunable_groups": prunable,
                   "frozen_groups": None if analysis else wb.deriver.graph.frozen, "analysis_error": analysis})
        return
    stem, head = ", ".join(seg.stem), ", ".join(seg.head)
    table = Table(title=f"{seed}: {len(seg.segments)} segments (stem {stem}; head {head})")
    for col in ("segment", "blocks", "conv layers", "channels", "params", "MACs", "prunable groups"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "conv layers") else "left")
    for s in seg.segments:
        blocks = s.blocks[0] if len(s.blocks) == 1 else f"{s.blocks[0]} .. {s.blocks[-1]} ({len(s.blocks)})"
        chans = f"{min(s.out_channels)}-{max(s.out_channels)}" if s.out_channels else "-"
        groups = "?" if prunable is None else str(prunable[s.index])
        table.add_row(str(s.index), blocks, str(len(s.convs)), chans, human(s.params), human(s.macs), groups)
    out.print(table)
    if analysis:
        console.print(f"pruning analysis failed, so what each ratio would do is unknown: {analysis}", markup=False)
        return
    for s in seg.segments:
        if prunable[s.index] == 0:
            console.print(f"note: segment {s.index} has no prunable channel group: its ratio changes nothing",
                          markup=False)
    frozen = wb.deriver.graph.frozen
    if frozen:
        why = sorted(set(frozen.values()))
        console.print(f"note: {len(frozen)} channel group(s) keep their width, e.g. because {why[0]}", markup=False)


def _prunable_groups(wb: Workbench) -> list[int]:
    """How many prunable channel groups lie in each segment (0: the segment's ratio changes nothing)."""
    counts = [0] * wb.num_segments
    for segs in wb.deriver.group_segments.values():
        for s in segs:
            counts[s] += 1
    return counts


def search(
    seed: str = SeedOpt, weights: str | None = WeightsOpt, segments: str = SegmentsOpt,
    ratios: str = RatiosOpt, round_to: int = RoundOpt, monotone: bool = MonotoneOpt,
    max_params: int | None = MaxParamsOpt, max_macs: int | None = MaxMacsOpt, exclude: list[str] = ExcludeOpt,
    limit: int | None = LimitOpt, sample_seed: int = SampleSeedOpt, scope: str = ScopeOpt,
    num_classes: int | None = ClassesOpt, input_size: int | None = InputOpt, json_out: bool = JsonOpt,
) -> None:
    """List the candidates of a search space with params, MACs and size vs the seed (no training)."""
    from scbp_edge.api import Workbench

    wb = Workbench(SeedOptions(seed, weights, num_classes, input_size, segments=segments, round_to=round_to))
    cands = wb.space(ratios, monotone=monotone, exclude=exclude, limit=limit, sample_seed=sample_seed,
                     max_params=max_params, max_macs=max_macs, scope=scope)
    base = wb.static([0.0] * wb.num_segments)
    if json_out:
        emit_json({"seed": encode(base), "candidates": [encode(c) for c in cands]})
        return
    table = Table(title=f"{len(cands)} candidates of {seed} ({wb.num_segments} segments)")
    for col in ("id", "ratios", "params", "MACs", "fp32 size", "params vs seed", "MACs vs seed", "ref"):
        table.add_column(col, no_wrap=col in ("id", "ratios"))
    for c in cands:
        table.add_row(
            c.id, config_text(c.ratios, c.scopes), human(c.params), human(c.macs), human(c.size_bytes, "B"),
            f"{100 * c.params / base.params:.1f}%", f"{100 * c.macs / base.macs:.1f}%", c.reference or "",
        )
    out.print(table)


def derive(
    config: str = typer.Option(..., "--config", help="One ratio per segment, e.g. 0.5,0.25,0; 0.5i cuts only the "
                               "insides of that segment's blocks, 0.5s its residual stream too"),
    output: Path = typer.Option(..., "-o", "--output", help="out.pt (derived model) or out.onnx"),
    seed: str = SeedOpt, weights: str | None = WeightsOpt, segments: str = SegmentsOpt, round_to: int = RoundOpt,
    num_classes: int | None = ClassesOpt, input_size: int | None = InputOpt,
    dynamic_batch: bool = DynamicBatchOpt,
    data: str | None = typer.Option(None, "--data", help="Training images to choose channels and re-solve weights "
                                    "on: 'digits' or a folder with train/ (without it the weights are inherited)"),
    calib_images: int = CalibImagesOpt, reconstruct: bool = ReconstructOpt, criterion: str = CriterionOpt,
    residual_solve: bool = ResidualOpt, refine_seconds: float = RefineOpt, scope: str = ConfigScopeOpt,
    json_out: bool = JsonOpt, trace_timeout: float | None = TraceTimeoutOpt,
) -> None:
    """Write one derived model: a .pt the tool can load back, or a validated .onnx."""
    from scbp_edge.errors import ScbpError

    if calib_images < 1:
        raise ScbpError(f"--calib-images {calib_images} must be at least 1")
    if not refine_seconds >= 0:
        raise ScbpError(f"--refine-seconds {refine_seconds} must be 0 (off) or more")
    opts = SeedOptions(seed, weights, num_classes, input_size, segments=segments, round_to=round_to,
                       trace_timeout=trace_timeout)
    check_seed_options(opts)  # a bad value is one line before torch loads
    from scbp_edge.api import Workbench, calibration_images
    from scbp_edge.derive.refine import STEPS as REFINE_STEPS

    with console.status(f"tracing {seed} and analysing its channel dependencies"):
        wb = Workbench(opts)
        _ = wb.deriver  # the analysis, under the spinner
    ratios, scopes = parse_config(config, wb.num_segments, scope)
    if data is not None and data != "none":
        with console.status(f"reading '{data}' and computing the seed's outputs on {calib_images} images"):
            x, y = calibration_images(wb.seed.spec, data, calib_images,
                                      warn=lambda line: console.print(f"warning: {line}", markup=False))
            wb.calibrate(x, y, criterion=criterion, reconstruct=reconstruct, residual=residual_solve,
                         refine_steps=REFINE_STEPS if refine_seconds else 0, refine_seconds=refine_seconds)
    elif criterion != "l1":
        raise ScbpError(f"--criterion {criterion} chooses channels with data: give --data, or use l1")
    same = [i for i, r in enumerate(ratios) if r and wb.deriver.plan(ratios, scopes) == wb.deriver.plan(
        [0.0 if j == i else x for j, x in enumerate(ratios)], scopes)]
    for i in same:
        console.print(f"note: ratio {ratios[i]:g} of segment {i} changes nothing (its widths round back to the "
                      "seed's, or it has no prunable group)", markup=False)
    with console.status("deriving" + (" and reconstructing" if data and data != "none" and reconstruct else "")), \
            quiet_stdout(json_out):
        cand, model = wb.candidate(ratios, scopes=scopes)
    if output.suffix == ".onnx":
        from scbp_edge.export.onnx import export_onnx

        info = export_onnx(model, wb.seed.spec.input_shape, output, dynamic_batch=dynamic_batch)
        cand.extra["onnx"] = encode(info)
    else:
        wb.write(cand, model, output)
    if json_out:
        emit_json({**encode(cand), "output": str(output)})
    else:
        console.print(f"wrote {output}: {cand.id}, {human(cand.params)} params, {human(cand.macs)} MACs; "
                      f"{_reconstruction_line(cand.extra['reconstruction'])}", markup=False)


def _reconstruction_line(rec: dict) -> str:
    """What reconstruction did, in one phrase for the terminal."""
    if not rec["applied"]:
        return f"weights inherited (reconstruction: {rec['reason']})"
    kept = f", {len(rec['kept_l1'])} kept their inherited weights" if rec["kept_l1"] else ""
    return (f"{rec['layers']} layers re-solved on {rec['images']} images in {rec['seconds']:.1f} s (output error "
            f"{rec['error_before']:.3f} -> {rec['error_after']:.3f}){kept}{_refined_phrase(rec.get('refined'))}")


def _refined_phrase(ref: dict | None) -> str:
    """What the few-shot refinement after the solve did, as the end of that phrase."""
    if not ref:
        return ""
    if not ref["steps"]:
        return "; no refinement (under 5 steps fit in --refine-seconds)"
    if not ref["kept"]:
        after = "diverged" if ref["loss_after"] is None else f"{ref['loss_after']:.3f}"
        return f"; refinement undone (held-out distillation loss {ref['loss_before']:.3f} -> {after})"
    return (f"; refined {ref['steps']} steps in {ref['seconds']:.1f} s (held-out distillation loss "
            f"{ref['loss_before']:.3f} -> {ref['loss_after']:.3f})")
