"""The code's own rules, checked as tests so that the README's test command (and CI) enforce them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_import_contracts_hold():
    """Layers, runtime independence, the single torch_pruning importer (pyproject's [tool.importlinter])."""
    res = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_ruff_is_clean():
    res = subprocess.run([str(BIN / "ruff"), "check", "scbp_edge", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_modules_stay_small():
    """Files under ~400 lines: a longer one is a sign that two things share a module."""
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "scbp_edge").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long
