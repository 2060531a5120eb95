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
    budget = build_space("s", sets, keep=lambda c, _scopes: sum(c) >= 1.0)
    assert all(sum(c.ratios) >= 1.0 for c in budget if not c.reference)
    with pytest.raises(SpaceError, match="no candidate meets"):
        build_space("s", sets, keep=lambda c, _scopes: False)


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


def test_scopes_in_the_space_the_grammar_and_the_names():
    """Issue 56: ``both`` gives each nonzero ratio of a segment with a residual stream an inner variant."""
    sets = parse_ratios("0,0.5", 3)
    stream = build_space("s", sets)
    assert [c.id for c in build_space("s", sets, scope="both")] == [c.id for c in stream]  # no add: no copies
    both = build_space("s", sets, scope="both", inner_segments=frozenset({1, 2}))
    ids = {c.id: c for c in both}
    assert len(both) == 2 * (1 + 2 + 2 + 4) and len(ids) == len(both)  # segment 0 holds no stream: one scope
    assert ids["s_r50-50-50"].reference == "uniform" and ids["s_r50-50i-50i"].reference is None
    assert ids["s_r0-50i-0"].scopes == ["stream", "inner", "stream"] and ids["s_r50-0-50"].scopes == []
    inner = build_space("s", sets, scope="inner", inner_segments=frozenset({1, 2}))
    assert len(inner) == 8 + 1 and not any(c.id.startswith("s_r0-50-") or c.id == "s_r0-0-50" for c in inner)
    no_inner_mid = build_space("s", sets, scope="both", inner_segments=frozenset({1, 2}), exclude=["*,0.5i,*"])
    assert not any(c.scopes[1:2] == ["inner"] for c in no_inner_mid) and "s_r0-50-0" in {c.id for c in no_inner_mid}
    no_mid = build_space("s", sets, scope="both", inner_segments=frozenset({1, 2}), exclude=["*,0.5,*"])
    assert [c.id for c in no_mid if c.ratios[1] == 0.5] == ["s_r50-50-50"]  # a plain ratio matches either scope
    assert candidate_id("s", [0.5, 0.25, 0], scopes=("inner", "stream", "stream")) == "s_r50i-25-0"
    assert parse_config("0.5i,0.25,0", 3) == ((0.5, 0.25, 0.0), ("inner", "stream", "stream"))
    assert parse_config("0.5,0.25s,0", 3) == ((0.5, 0.25, 0.0), ())
    assert parse_config("0.5,0.25s,0", 3, "inner") == ((0.5, 0.25, 0.0), ("inner", "stream", "inner"))
    with pytest.raises(SpaceError, match="'0.5x' in --config is neither a ratio nor a ratio with a scope"):
        parse_config("0.5x,0,0", 3)
    with pytest.raises(SpaceError, match="--scope 'outer' is not one of stream, inner, both"):
        build_space("s", sets, scope="outer")
    with pytest.raises(SpaceError, match="names no single network"):
        parse_config("0.5,0,0", 3, "both")


def test_the_workbench_space_tries_both_scopes_only_where_they_differ():
    from scbp_edge.api import SeedOptions, Workbench

    wb = Workbench(SeedOptions("cifar-resnet20"))
    cands = wb.space("0,0.5", scope="both")
    plans = [tuple(sorted(wb.deriver.plan(c.ratios, c.scopes).items())) for c in cands]
    assert len(set(plans)) == len(plans) == 18  # stage 1's stream is the stem's: no inner variant there
    r = {c.id: c for c in cands}
    assert r["cifar-resnet20_r50-50i-50i"].params > r["cifar-resnet20_r50-50-50"].params
    assert r["cifar-resnet20_r50-50i-50i"].macs == wb.static([0.5] * 3, ["inner"] * 3).macs
