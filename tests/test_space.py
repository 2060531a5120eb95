"""Search space: set product, transformations, references, ids."""

from __future__ import annotations

import pytest

from scbp_edge.errors import SpaceError
from scbp_edge.space import build_space, candidate_id, parse_config, parse_ratios


def test_product_and_references():
    cands = build_space("resnet18", parse_ratios("0,0.25,0.5", 4))
    assert len(cands) == 81
    assert len({c.id for c in cands}) == 81
    refs = {tuple(c.ratios): c.reference for c in cands if c.reference}
    assert refs == {(0.0,) * 4: "seed", (0.25,) * 4: "uniform", (0.5,) * 4: "uniform"}


def test_per_segment_sets_and_errors():
    assert parse_ratios("0,0.25/0,0.5/0", 3) == [[0, 0.25], [0, 0.5], [0]]
    with pytest.raises(SpaceError, match="2 per-segment sets but there are 3"):
        parse_ratios("0/0.5", 3)
    with pytest.raises(SpaceError, match="outside"):
        parse_ratios("0,1", 3)
    with pytest.raises(SpaceError, match="not a number"):
        parse_ratios("0,abc", 3)
    with pytest.raises(SpaceError, match="3 segments"):
        parse_config("0.5,0", 3)


def test_monotone_exclude_limit_keep_references():
    sets = parse_ratios("0,0.25,0.5", 3)
    mono = build_space("s", sets, monotone=True)
    assert all(c.ratios == sorted(c.ratios) for c in mono if not c.reference)
    excl = build_space("s", sets, exclude=["0.5,*,*"])
    assert not any(c.ratios[0] == 0.5 and not c.reference for c in excl)
    assert any(c.ratios == [0.5, 0.5, 0.5] for c in excl)  # reference survives
    a = build_space("s", sets, limit=5, sample_seed=3)
    b = build_space("s", sets, limit=5, sample_seed=3)
    assert [c.id for c in a] == [c.id for c in b] and len(a) == 5 + 3
    budget = build_space("s", sets, keep=lambda c: sum(c) >= 1.0)
    assert all(sum(c.ratios) >= 1.0 for c in budget if not c.reference)
    with pytest.raises(SpaceError, match="no candidate meets"):
        build_space("s", sets, keep=lambda c: False)


def test_ids_are_readable_and_stable():
    assert candidate_id("resnet18", [0.5, 0.25, 0, 0]) == "resnet18_r50-25-0-0"
    assert candidate_id("resnet18", [0.5, 0.25, 0, 0], "int8") == "resnet18_r50-25-0-0_int8"
    assert candidate_id("pkg.mod:make", [0.125]) == "make_r12p5"


def test_ratio_sets_from_sensitivity_keep_only_ratios_that_buy_speed():
    from scbp_edge.space import SegmentProbe, ratio_sets_from_sensitivity

    probes = [
        SegmentProbe(0, 0.5, 1.07, 2.5),
        SegmentProbe(1, 0.25, 1.003, 6.9),  # rounds to a width the target runs no faster: out
        SegmentProbe(1, 0.5, 1.24, 33.3),
        SegmentProbe(1, 0.75, 1.33, 52.0),
        SegmentProbe(2, 0.25, 1.11, 18.6),
        SegmentProbe(2, 0.375, 1.10, 30.0),  # slower and worse than 0.25: out
        SegmentProbe(2, 0.5, 1.21, 47.3),
        SegmentProbe(2, 0.625, 1.215, 60.0),  # +0.4 % speed over 0.5 for 13 points: out
    ]
    assert ratio_sets_from_sensitivity(probes, 4) == [[0.0, 0.5], [0.0, 0.5, 0.75], [0.0, 0.25, 0.5], [0.0]]
    # A stricter gain drops the marginal ones; a looser one keeps the 0.4 % step.
    assert ratio_sets_from_sensitivity(probes, 3, min_gain=0.08)[1] == [0.0, 0.5]
    assert ratio_sets_from_sensitivity(probes, 3, min_gain=0.0)[2] == [0.0, 0.25, 0.5, 0.625]
    with pytest.raises(SpaceError, match="outside"):
        ratio_sets_from_sensitivity(probes, 2)
