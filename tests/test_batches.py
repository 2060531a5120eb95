"""A target's batch sizes above 1: every measured candidate is timed at each, and the report says so (issue 46).

That a batch-1 target times nothing more is checked by the end-to-end build in test_build.py.
"""

from __future__ import annotations

import json
import sqlite3

import onnx
import pytest

from tests.helpers import FAST_TARGET, cli


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_a_target_with_batch_sizes_times_every_candidate_at_each(tmp_path):
    target = tmp_path / "cpu-batch.toml"
    target.write_text(FAST_TARGET.replace('name = "cpu-fast"', 'name = "cpu-batch"\nbatch_sizes = [1, 4]'))
    res = cli("build", "--target", str(target), "--data", "none", "--ratios", "0,0.5", "--limit", "2",
              "--top-k", "0", "--runs", str(tmp_path / "runs"), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    run = next((tmp_path / "runs").iterdir())
    con = sqlite3.connect(run / "run.sqlite")
    try:
        rows = [json.loads(m) for (m,) in con.execute("SELECT measurement FROM candidates WHERE status = 'measured'")]
    finally:
        con.close()
    assert len(rows) >= 2
    for m in rows:
        (b4,) = m["batched"]
        assert b4["latency"]["batch"] == 4 and b4["latency"]["throughput_ips"] > 0 and b4["speedup"] > 0
        assert m["latency"]["batch"] == 1  # ranking stays on one frame at a time
    # timed at batch 4 because the exported file takes any batch: the shipped ONNX is the timed one
    dim = onnx.load(next((run / "onnx").glob("*.onnx"))).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value
    report = (run / "report.md").read_text()
    assert "| Batch 4 | " in report and "images/s" in report

