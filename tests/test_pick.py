"""A latency budget steers the expensive steps and the final choice; the second proxy; training speed options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from scbp_edge.rank import Constraints, pareto_front, select
from scbp_edge.rank.pick import pick_for_training
from tests.helpers import cli, fast_target, point


def pt(net, speedup, proxy, prec="fp32", p50=None, seed=False, test=None):
    return point(f"{net}_{prec}", network=net, precision=prec, speedup=speedup,
                 p50_ms=p50 if p50 is not None else 1.0 / speedup, proxy_accuracy=proxy, accuracy=test or proxy,
                 test_accuracy=test, reference="seed" if seed else None, is_seed=seed, memory_mb=1.0, size_mb=1.0)


POINTS = [pt("seed", 1.0, 90, seed=True), pt("a", 1.1, 89), pt("b", 1.3, 88), pt("c", 1.55, 70), pt("d", 1.6, 30),
          pt("e", 1.7, 65), pt("f", 2.2, 20), pt("g", 1.45, 80)]


def test_with_a_budget_the_picks_are_inside_it_by_proxy_plus_a_margin_just_outside():
    picks = pick_for_training(POINTS, 2, Constraints(speedup=1.5), margin=1)
    assert list(picks)[:2] == ["c", "e"]  # inside (>= 1.5x), best proxy first; the collapsed 'd' is not dropped
    assert "inside the budget" in picks["c"]
    assert list(picks)[2] == "g" and "just outside" in picks["g"]  # 1.45x: within the 15 % margin
    assert "seed" not in picks and "a" not in picks  # the seed is trained anyway; 'a' is far outside


def test_collapsed_proxies_are_not_floored_away():
    picks = pick_for_training([POINTS[0], pt("x", 2.0, 10), pt("y", 2.1, 5)], 2, Constraints(speedup=1.8), 0)
    assert set(picks) == {"x", "y"}


def test_without_a_budget_the_picks_spread_along_the_front():
    picks = pick_for_training(POINTS, 3, Constraints(), margin=5)
    front = set(pareto_front([p for p in POINTS if not p.is_seed],
                             (("proxy_accuracy", "max"), ("p50_ms", "min"))))
    assert len(picks) == 3 and all(f"{n}_fp32" in front for n in picks)
    assert "f" in picks and "a" in picks  # both ends of the front


def test_one_network_is_picked_once_whatever_its_precisions():
    pts = [POINTS[0], pt("h", 1.6, 85, "fp32"), pt("h", 2.4, 84, "int8"), pt("i", 1.9, 60, "int8")]
    picks = pick_for_training(pts, 2, Constraints(speedup=1.5), 0)
    assert list(picks) == ["h", "i"] and "as fp32" in picks["h"]


def test_selection_with_a_budget_is_the_most_accurate_inside_it():
    pts = [replace(p, accuracy=a) for p, a in zip(POINTS, [90, 89, 88, 86.5, 84, 87.5, 70, 85])]
    sel = select(pts, [p.id for p in pts], Constraints(speedup=1.5), 90, True)
    assert sel.id == "e_fp32" and "most accurate" in sel.reason
    assert set(sel.feasible) == {"c_fp32", "d_fp32", "e_fp32", "f_fp32"}
    none = select(pts, [], Constraints(max_latency_ms=0.01), 90, True)
    assert none.id is None and "relax it" in none.reason


def test_ties_within_measurement_noise_go_to_the_more_accurate():
    a = replace(pt("a", 2.0, 80), p50_ms=0.50, round_p50_ms=(0.48, 0.50, 0.52), accuracy=80)
    b = replace(pt("b", 1.9, 85), p50_ms=0.51, round_p50_ms=(0.49, 0.51, 0.53), accuracy=85)
    sel = select([a, b], ["a_fp32", "b_fp32"], Constraints(max_accuracy_drop=20), 90, True)
    assert sel.id == "b_fp32" and "tied within measurement noise" in sel.reason


@pytest.mark.slow
def test_a_budgeted_build_with_the_second_proxy(tmp_path):
    res = cli("build", "--target", str(fast_target(tmp_path)), "--ratios", "0,0.5", "--scope", "stream", "--runs",
              str(tmp_path), "--speedup", "1.05", "--top-k", "1", "--margin", "1", "--proxy", "distill",
              "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
    distilled = [c for c in rep["candidates"] if (c["accuracy"] or {}).get("distill")]
    assert distilled and all(c["accuracy"]["distill"]["steps"] > 0 and "adabn" in c["accuracy"] for c in distilled)
    why = rep["training"]["why"]
    assert why and all("budget" in w for w in why.values())
    b = rep["budget_result"]
    assert b["speedup"] == 1.05 and (b["best"] is None or b["best_speedup"] >= 1.05)
    assert "most accurate candidate with >= 1.05x" in rep["selection"]["reason"] or rep["selection"]["id"] is None


def test_training_speed_options_keep_accuracy_on_a_short_real_run():
    """channels_last + bf16 autocast (where the CPU has it) fine-tune as well as plain fp32."""
    import torch

    from scbp_edge import defaults
    from scbp_edge.accuracy import evaluate, train
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.data.digits import load_digits_split
    from scbp_edge.seeds import load_seed

    seed = load_seed(defaults.DEFAULT_SEED, defaults.default_seed_weights(), input_shape=defaults.DEFAULT_INPUT,
                     mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
    wb = Workbench(SeedOptions(defaults.DEFAULT_SEED, in_channels=1, input_size=16), seed)
    tr, te = load_digits_split(0)
    (x, y), (tx, ty) = tr.tensors(defaults.DIGITS_MEAN, defaults.DIGITS_STD), te.tensors(
        defaults.DIGITS_MEAN, defaults.DIGITS_STD)
    acc = {}
    for name, cl, bf in (("plain", False, False), ("fast", True, None)):
        _, model = wb.candidate([0.5, 0.5, 0.5])
        torch.manual_seed(0)
        acc[name] = evaluate(train(model, x, y, epochs=2, lr=0.02, channels_last=cl, bf16=bf), tx, ty)
    assert acc["fast"] >= acc["plain"] - 2.0, acc
