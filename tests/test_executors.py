"""Executors: local isolation; a real local Ray cluster, with a worker killed mid-run."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil
import pytest

from scbp_edge.errors import ScbpError
from scbp_edge.executors import LocalExecutor, make_executor
from tests.helpers import cli, fast_target

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'scbp-edge[ray]')")


@dataclass(frozen=True)
class _Job:
    network: str
    x: int


@dataclass(frozen=True)
class _Offset:
    offset: int


@dataclass(frozen=True)
class _Scale:
    scale: int


def _square(job: _Job, ctx: _Offset) -> int:
    if job.x == 3:
        raise ValueError("three is bad")
    return job.x * job.x + ctx.offset


def test_local_executor_isolates_failures():
    got = {}
    LocalExecutor().map(_square, [_Job(str(i), i) for i in range(5)], _Offset(1),
                        lambda k, r, e: got.__setitem__(k, (r, e)))
    assert got["2"] == (5, None) and got["3"][0] is None and "three is bad" in got["3"][1]
    with pytest.raises(ScbpError, match="not one of local, ray"):
        make_executor("spark")


def test_a_context_that_does_not_fit_the_task_is_the_callers_bug_not_a_failed_candidate():
    """Another task's context raises before any task runs, instead of failing every candidate one by one
    (issue 59 step 4: tasks take a typed context record; a renamed field fails where the record is built)."""
    got = {}
    with pytest.raises(TypeError, match="_square takes a _Offset, not a _Scale"):
        LocalExecutor().map(_square, [_Job(str(i), i) for i in range(3)], _Scale(1),
                            lambda k, r, e: got.__setitem__(k, (r, e)))
    assert got == {}


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, status FROM candidates").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_ray_build_with_a_worker_killed_mid_run(tmp_path):
    args = [sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(fast_target(tmp_path)),
            "--ratios", "0,0.5", "--scope", "stream", "--runs", str(tmp_path / "runs"), "--executor", "ray",
            "--retries", "3",
            "--top-k", "1", "--epochs", "1", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and killed is None:
        dbs = list((tmp_path / "runs").glob("*/run.sqlite"))
        try:
            done = sum(s == "exported" for _, s in _rows(dbs[0])) if dbs else 0
        except sqlite3.OperationalError:
            done = 0
        if done >= 1:
            for p in psutil.process_iter(["pid", "cmdline"]):
                with contextlib.suppress(psutil.Error, TypeError):
                    if "ray::evaluate_network" in " ".join(p.info["cmdline"] or []):
                        p.send_signal(signal.SIGKILL)
                        killed = p.info["pid"]
                        break
        time.sleep(0.05)
    assert killed, "no Ray task caught in flight"
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run_dir = json.loads(out)["run_dir"]
    rows = _rows(next((tmp_path / "runs").glob("*/run.sqlite")))
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 8
    assert all(s == "measured" for _, s in rows), rows
    rep = json.loads((tmp_path / "runs" / run_dir.split("/")[-1] / "report.json").read_text())
    assert rep["trained"]["rows"], "training ran as Ray tasks too"


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_unreachable_ray_address_is_one_line(tmp_path):
    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.5", "--runs",
              str(tmp_path), "--executor", "ray", "--ray-address", "127.0.0.1:1", timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "cannot reach Ray cluster" in res.stderr.strip().splitlines()[-1]
