"""Segments: stages by resolution, N equal segments, stem/head never pruned."""

from __future__ import annotations

import pytest

from scbp_edge.errors import SegmentError
from scbp_edge.seeds import load_seed
from scbp_edge.segments import segment_model


@pytest.mark.parametrize(
    ("name", "size", "stages"),
    [("cifar-resnet56", None, 3), ("cifar-resnet20", None, 3), ("resnet18", 64, 4), ("resnet50", 64, 4)],
)
def test_stage_segments(name, size, stages):
    seed = load_seed(name, input_shape=(3, size, size) if size else None)
    seg = segment_model(seed.model, seed.spec.input_shape)
    assert len(seg.segments) == stages
    assert seg.stem == ["conv1"] and seg.segment_of("conv1") is None
    assert seg.segment_of(seg.head[0]) is None


def test_n_segments_are_contiguous_and_balanced():
    seed = load_seed("cifar-resnet56")
    seg = segment_model(seed.model, seed.spec.input_shape, "6")
    sizes = [len(s.blocks) for s in seg.segments]
    assert sizes == [5, 5, 5, 4, 4, 4] and sum(sizes) == 27
    order = [b for s in seg.segments for b in s.blocks]
    assert order == [f"layer{i}.{j}" for i in (1, 2, 3) for j in range(9)]
    for bad in ("0", "28"):
        with pytest.raises(SegmentError, match="out of range.*1..27"):
            segment_model(seed.model, seed.spec.input_shape, bad)
    with pytest.raises(SegmentError, match="neither"):
        segment_model(seed.model, seed.spec.input_shape, "many")


def test_a_transformer_is_refused_naming_an_attention_layer_by_path_and_type():
    seed = load_seed("swin_t", input_shape=(3, 64, 64))
    with pytest.raises(SegmentError, match=r"not a CNN: .*e\.g\. features\.1\.0\.attn \(ShiftedWindowAttention\)"):
        segment_model(seed.model, (3, 64, 64))


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_the_cli_refuses_a_transformer_in_one_line_with_exit_2(tmp_path):
    from tests.helpers import cli

    res = cli("inspect", "--seed", "swin_t", "--input-size", "64", cwd=tmp_path, timeout=180)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(lines) == 1 and "not a CNN" in lines[0], res.stderr
