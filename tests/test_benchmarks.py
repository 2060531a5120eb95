"""Benchmark scripts refuse bad arguments in one line, before any work (their runs take tens of minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _refusal(script: str, *args: str) -> str:
    """Run ``benchmarks/script`` with ``args``; assert exit 2, one stderr line, no traceback; return the line."""
    res = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("value", ["3.0", "1.5,x"])
def test_scbp_vs_peers_refuses_a_budget_it_does_not_have(value):
    line = _refusal("scbp_vs_peers.py", "--budgets", value)
    assert "--budgets" in line and "1.25,1.5,2.0" in line, line


@pytest.mark.parametrize("value", ["0", "-2"])
def test_align_refuses_a_repeat_count_below_one(value):
    assert f"--repeats {value} must be at least 1" in _refusal("align.py", "--repeats", value)


@pytest.mark.parametrize(("args", "match"), [
    (["--part", "seed", "--images", "0"], "--images 0 must be positive"),
    (["--part", "seed", "--epochs", "-1"], "--epochs -1.0 must be positive"),
    (["--part", "1.5", "--images", "7"], "--part 1.5 needs the fine-tuned seed (its teacher): run --part seed first"),
])
def test_users_table_refuses_bad_parts_in_one_line_before_any_work(args, match):
    assert match in _refusal("users_table.py", *args)
