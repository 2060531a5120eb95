"""Hostile input: every bad value is one line and exit 2, no traceback, no junk run folder; runs lock and recover."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scbp_edge.errors import ScbpError
from tests.helpers import FAST_TARGET, cli, fast_target


def _one_line(res: subprocess.CompletedProcess, match: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and match in lines[0], res.stderr


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("x")
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o500)
    (d / "rand.pt").write_bytes(os.urandom(4096))
    (d / "factory_mod.py").write_text("def make(num_classes=10):\n    raise ValueError('no such width')\n")
    (d / "import_error.py").write_text("raise ImportError('missing dependency foo')\n")
    for name, body in {"name123.toml": 'name = 123\nbackend = "onnxruntime"\n',
                       "batchbool.toml": 'name = "x"\nbackend = "onnxruntime"\nbatch_sizes = [true]\n',
                       "nan.toml": 'name = "x"\nbackend = "onnxruntime"\n[measure]\ntimeout_s = nan\n'}.items():
        (d / name).write_text(body)
    data = d / "data"
    for split in ("train", "test"):
        (data / split / "cat").mkdir(parents=True)
    (data / "train" / "cat" / "x.jpg").write_bytes(b"not an image")
    return d


CASES = [  # (args, words of the one line); {d} is the folder of bad files
    (["build", "--runs", "/proc/scbp-runs", "--data", "none", "--top-k", "0"], "cannot hold run folders"),
    (["build", "--runs", "{d}/a_file/runs", "--data", "none"], "cannot hold run folders"),
    (["build", "--profile-chunk", "0"], "--profile-chunk 0 must be at least 1"),
    (["build", "--executor", "spark"], "--executor 'spark' is not one of local, ray"),
    (["build", "--top-k", "-1"], "--top-k -1 must be at least 0"),
    (["build", "--epochs", "-1"], "--epochs -1 must be at least 0"),
    (["build", "--num-classes", "0"], "--num-classes 0 must be at least 2"),
    (["build", "--input-size", "-5"], "--input-size -5 must be at least 8"),
    (["inspect", "--input-size", "-5"], "--input-size -5 must be at least 8"),
    (["build", "--limit", "0", "--data", "none"], "--limit 0 must be at least 1"),
    (["build", "--speedup", "0"], "--speedup 0.0 must be a positive factor"),
    (["build", "--data", "{d}/nowhere"], "--data"),
    (["build", "--data", "{d}/data"], "no readable images"),
    (["build", "--seed", "resnet19"], "unknown seed 'resnet19'"),
    (["build", "--weights", "{d}/rand.pt", "--data", "none"], "is not a PyTorch checkpoint"),
    (["build", "--weights", "{d}", "--data", "none"], "is a folder"),
    (["inspect", "--seed", "factory_mod:make"], "raised ValueError: no such width"),
    (["inspect", "--seed", "import_error:make"], "ImportError: missing dependency foo"),
    (["build", "--target", "{d}/name123.toml"], "field 'name' must be a string"),
    (["build", "--target", "{d}/batchbool.toml"], "field 'batch_sizes' must be a list of integers"),
    (["build", "--target", "{d}/nan.toml"], "'measure.timeout_s' must be a finite number"),
    (["build", "--target", "raspberry-pi-5", "--device", "ssh://-Fevil@host"], "not allowed"),
    (["profile", "{d}/m.onnx", "--target", "raspberry-pi-5", "--device", "ssh://root@127.0.0.1:1"], "not usable"),
    (["package", "/nonexistent", "-o", "{d}/ctx"], "has no report.json"),
    (["compare", "{d}/a_file", "{d}/a_file"], "cannot read report"),
    # issue 57: values that once gave a traceback, or turned a bound off unsaid
    (["inspect", "--trace-timeout", "-1"], "--trace-timeout -1.0 must be a finite number of seconds"),
    (["inspect", "--trace-timeout", "nan"], "--trace-timeout nan must be a finite number of seconds"),
    (["build", "--target", "{d}"], "is a folder; give a target name"),
    (["build", "--trace-timeout", "inf"], "--trace-timeout inf must be a finite number of seconds"),
    (["serve", "{d}/m.onnx", "--request-timeout", "inf"], "--request-timeout inf must be a finite number"),
]


@pytest.mark.parametrize(("args", "match"), CASES, ids=[" ".join(c[0])[:50] for c in CASES])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(bad_files, tmp_path, args, match):
    if "{d}/m.onnx" in args:
        from scbp_edge.api import SeedOptions, Workbench
        from scbp_edge.export.onnx import export_onnx

        export_onnx(Workbench(SeedOptions()).seed.model, (3, 32, 32), bad_files / "m.onnx")
    args = [a.replace("{d}", str(bad_files)) for a in args]
    if args[0] == "build" and "--runs" not in args:
        args += ["--runs", str(tmp_path / "runs")]
    env = dict(os.environ, PYTHONPATH=str(bad_files))
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", *args], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    _one_line(res, match)
    assert not list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True


def _build(tmp: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(fast_target(tmp)),
                             "--data", "none", "--ratios", "0,0.25,0.5", "--scope", "stream", "--runs",
                             str(tmp / "runs"), "--profile-chunk", "2", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(pred, timeout=300.0):
    t = time.time()
    while time.time() - t < timeout:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition never met")


def _measured(db: Path) -> int:
    try:
        con = sqlite3.connect(db)
        n = con.execute("SELECT count(*) FROM candidates WHERE status='measured'").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_two_resumes_of_one_run_exactly_one_works(tmp_path):
    proc = _build(tmp_path)
    db = _wait_for(lambda: next(iter((tmp_path / "runs").glob("*/run.sqlite")), None))
    _wait_for(lambda: _measured(db) >= 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = db.parent
    a = subprocess.Popen([sys.executable, "-m", "scbp_edge.cli.main", "build", "--resume", str(run)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # a has the lock by now (it is deriving or measuring)
    b = cli("build", "--resume", str(run))
    _one_line(b, "is in use by scbp-edge pid")
    assert a.wait(timeout=600) == 0, a.stderr.read()
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM candidates WHERE status != 'measured'").fetchone()[0] == 0
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command_and_sigkill_leaves_no_worker(tmp_path):
    proc = _build(tmp_path)
    db = _wait_for(lambda: next(iter((tmp_path / "runs").glob("*/run.sqlite")), None))
    _wait_for(lambda: _measured(db) >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and f"scbp-edge build --resume {db.parent}" in err and "Traceback" not in err
    (tmp_path / "b").mkdir()
    proc = _build(tmp_path / "b")
    db = _wait_for(lambda: next(iter((tmp_path / "b" / "runs").glob("*/run.sqlite")), None))
    _wait_for(lambda: _measured(db) >= 1)
    # between two chunks no worker lives for a moment: wait for the next chunk's
    workers = _wait_for(lambda: psutil.Process(proc.pid).children(recursive=True), timeout=60)
    proc.kill()  # the build only, not its group: its workers must notice on their own
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, f"{len(alive)} workers outlived their build"


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_a_damaged_run_database_is_one_line_and_a_report_of_what_remains(tmp_path):
    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.25,0.5",
              "--scope", "stream", "--runs", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    db = run / "run.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4096] = os.urandom(4096)
    db.write_bytes(bytes(data))
    _one_line(cli("build", "--resume", str(run)), "is damaged")
    rep = cli("report", str(run), "--format", "md")
    assert rep.returncode == 2 and "Traceback" not in rep.stderr and "is damaged" in rep.stderr
    assert len(rep.stderr.strip().splitlines()) == 1


# What SQLite's integrity check printed in CI for one random damage: five lines, which made the error five lines.
_CI_COMPLAINT = ("*** in database main ***\nPage 10: btreeInitPage() returns error code 11\n"
                 "On tree page 9 cell 0: Rowid 57 out of order\nFragmentation of 1995 bytes reported as 0 on page 9")


def test_sqlite_complaints_become_one_bounded_line(tmp_path):
    from scbp_edge.records import CandidateRow
    from scbp_edge.store import RunStore, one_line

    assert one_line(_CI_COMPLAINT) == ("Page 10: btreeInitPage() returns error code 11; On tree page 9 cell 0: "
                                       "Rowid 57 out of order; Fragmentation of 1995 bytes reported as 0 on page 9")
    assert len(one_line("x" * 1000)) == 160 and one_line("*** in database main ***") == "unknown damage"
    # A real file, damaged at many places: whatever SQLite says, the complaint is one line.
    good = tmp_path / "good.sqlite"
    store = RunStore(good, create=True)
    rows = [CandidateRow(f"c{i}", i, f"n{i}", "fp32", (0.5,) * 3) for i in range(400)]
    store.add_candidates(rows)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    clean, damaged = good.read_bytes(), 0
    for seed in range(12):
        data = bytearray(clean)
        at = random.Random(seed).randrange(4096, len(data) - 4096)
        data[at : at + 4096] = random.Random(seed).randbytes(4096)
        bad = tmp_path / f"bad{seed}.sqlite"
        bad.write_bytes(bytes(data))
        try:
            problem = RunStore(bad).integrity_problem()
        except ScbpError as exc:
            problem = str(exc)
        damaged += problem is not None
        assert problem is None or "\n" not in problem, problem
    assert damaged, "no damage was detected at all: the test did not exercise the check"


def test_a_run_killed_before_any_work_is_named_as_such(tmp_path):
    run = tmp_path / "runs" / "20260101-000000-x-cpu"
    run.mkdir(parents=True)
    _one_line(cli("build", "--resume", str(run)), "stopped before any work was saved")


def test_resuming_a_folder_that_is_no_run_leaves_it_as_it_was(tmp_path):
    """Issue 57: the refusal used to leave a .lock file behind in the user's folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    _one_line(cli("build", "--resume", str(folder)), "it is not a run folder")
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg"]


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_resume_refuses_flags_that_differ_from_the_stored_run_and_replays_it_without_them(tmp_path):
    """Issue 57: --resume ran the stored configuration and said nothing of the flags it ignored."""
    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.5", "--limit", "1",
              "--top-k", "0", "--runs", str(tmp_path / "runs"), "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)["run_dir"]
    before = (Path(run) / "run.sqlite").stat().st_mtime
    _one_line(cli("build", "--resume", run, "--ratios", "0,0.25", "--lr", "0.5", "--augment", "flip"),
              "--ratios 0,0.25, --lr 0.5, --augment flip would be ignored")
    assert (Path(run) / "run.sqlite").stat().st_mtime == before
    again = cli("build", "--resume", run, "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios",
                "0,0.5", "--top-k", "0", "--json")  # the run's own values, repeated: nothing to refuse
    assert again.returncode == 0, again.stderr


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_the_advice_package_gives_is_the_command_that_fixes_the_run(tmp_path):
    """Issue 57: package advised 'scbp-edge report RUN' (which rewrites nothing) and a --resume that did nothing."""
    import shutil

    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.5", "--limit", "1",
              "--top-k", "0", "--runs", str(tmp_path / "runs"), "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)["run_dir"]
    out = str(tmp_path / "ctx")
    shutil.rmtree(Path(run) / "onnx")
    _one_line(cli("package", run, "-o", out), f"write it again with scbp-edge build --resume {run}")
    assert cli("build", "--resume", run).returncode == 0
    assert cli("package", run, "-o", out).returncode == 0, "resuming did not write the model files again"
    (Path(run) / "report.json").write_text("{broken")
    _one_line(cli("package", run, "-o", out, "--force"), f"rewrite it with scbp-edge report {run} --write")
    assert cli("report", run, "--write").returncode == 0
    res = cli("package", run, "-o", out, "--force")
    assert res.returncode == 0, res.stderr


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_package_never_destroys_user_files(tmp_path):
    target = tmp_path / "t.toml"
    target.write_text(FAST_TARGET)
    res = cli("build", "--target", str(target), "--data", "none", "--ratios", "0,0.5", "--limit", "1",
              "--runs", str(tmp_path / "runs"), "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)["run_dir"]
    mine = tmp_path / "p" / "runtime" / "mine"
    mine.parent.mkdir(parents=True)
    mine.write_text("x")
    _one_line(cli("package", run, "-o", str(tmp_path / "p")), "is not empty and is not a context")
    assert mine.read_text() == "x"
    _one_line(cli("package", run, "-o", str(tmp_path / "t.toml")), "is a file")
    ctx = tmp_path / "ctx"
    assert cli("package", run, "-o", str(ctx)).returncode == 0
    (ctx / "runtime" / "mine").write_text("kept")
    (ctx / "notes.txt").write_text("kept")
    _one_line(cli("package", run, "-o", str(ctx)), "pass --force")
    assert cli("package", run, "-o", str(ctx), "--force").returncode == 0
    assert (ctx / "runtime" / "mine").read_text() == "kept" and (ctx / "notes.txt").read_text() == "kept"
    assert (ctx / "model.onnx").is_file() and (ctx / "runtime" / "session.py").is_file()


@pytest.mark.parametrize(("url", "match"), [
    ("ssh://[::1", "is not a valid URL"), ("ssh://user@", "is not of the form"), ("ssh://", "is not of the form"),
    ("ssh://root@host:99999", "has an invalid port"), ("ssh://root@host:port", "has an invalid port"),
    ("ssh://-oProxyCommand=x@host", "not allowed"), ("ssh://root@-oProxyCommand=x", "not allowed"),
])
@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_profile_refuses_a_malformed_device_url_in_one_line_and_runs_nothing(bad_files, tmp_path, url, match):
    """Issue 57: profile refused these with a thread's traceback, as if the host were down; build did not."""
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx

    export_onnx(Workbench(SeedOptions()).seed.model, (3, 32, 32), tmp_path / "m.onnx")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(f"#!/bin/sh\ntouch {tmp_path / 'ssh-ran'}\n")
    (fake / "ssh").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "profile", str(tmp_path / "m.onnx"),
                          "--target", "raspberry-pi-5", "--device", url], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=env)
    _one_line(res, match)
    assert not (tmp_path / "ssh-ran").exists(), "a command ran for a URL that was refused"


def test_a_run_whose_manifest_does_not_fit_its_record_is_one_line_on_resume(tmp_path):
    """Issue 59 step 2: a stored manifest field of the wrong type (here precisions as a number) is refused in one
    line that names it, and the run is left as it was (its lock released: a second try says the same)."""
    from scbp_edge.store import SCHEMA

    run = tmp_path / "runs" / "20260101-000000-x-cpu"
    run.mkdir(parents=True)
    db = sqlite3.connect(run / "run.sqlite")
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("config", json.dumps({"ratios": "0,0.5"})),
                                                       ("precisions", "5")])
    db.commit()
    db.close()
    for _ in range(2):
        _one_line(cli("build", "--resume", str(run)), "precisions")
