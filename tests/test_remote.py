"""SSH devices for real: an OpenSSH server on 127.0.0.1 with throwaway keys and host-key checking on."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scbp_edge.errors import ProfileError, TargetError
from scbp_edge.remote.ssh import SshDevice
from tests.conftest import SSHD, free_port
from tests.helpers import fast_target

pytestmark = [pytest.mark.remote, pytest.mark.skipif(not Path(SSHD).exists() or not shutil.which("ssh"),
                                                      reason="openssh-server not installed (bootstrap installs it)")]


def test_quoting_survives_hostile_names(sshd):
    dev = SshDevice(sshd["url"])
    tmp = dev.mktemp()
    evil = f"{tmp}/a b; touch pwned $(touch pwned2) `x`'q\""
    dev.run("sh", "-c", 'echo hi > "$1"', "sh", evil)
    assert dev.run("cat", evil) == "hi\n"
    assert os.listdir(tmp) == [Path(evil).name]
    assert not Path.home().joinpath("pwned").exists() and not Path.home().joinpath("pwned2").exists()
    dev.remove(tmp)
    assert not Path(tmp).exists()


def test_orphaned_temp_dirs_of_lost_connections_are_swept(sshd):
    old, new = Path("/tmp/scbp-edge.sweeptest-old"), Path("/tmp/scbp-edge.sweeptest-new")
    for d in (old, new):
        d.mkdir(exist_ok=True)
        (d / "m.onnx").write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    try:
        SshDevice(sshd["url"]).sweep_stale()
        assert not old.exists(), "an orphan from a lost connection was left"
        assert new.is_dir(), "a live run's temp dir was removed"
    finally:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)


def test_host_key_checking_stays_on(sshd, tmp_path):
    bad = tmp_path / "ssh_config"
    bad.write_text(sshd["dir"].joinpath("ssh_config").read_text().replace(
        str(sshd["dir"] / "known_hosts"), str(tmp_path / "empty_known_hosts")))
    os.environ["SCBP_SSH_CONFIG"] = str(bad)
    try:
        with pytest.raises(ProfileError, match="not usable.*host key"):
            SshDevice(sshd["url"]).check()
    finally:
        os.environ["SCBP_SSH_CONFIG"] = str(sshd["dir"] / "ssh_config")


def test_unreachable_device_and_bad_url():
    with pytest.raises(ProfileError, match="not usable"):
        SshDevice(f"ssh://root@127.0.0.1:{free_port()}").check()
    with pytest.raises(TargetError, match="ssh://user@host"):
        SshDevice("http://x")
    with pytest.raises(TargetError, match="not allowed"):
        SshDevice("ssh://ro;ot@host")


def _build(tmp: Path, url: str, *extra: str) -> subprocess.Popen:
    target = fast_target(tmp)
    args = [sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(target), "--data", "none",
            "--ratios", "0,0.5", "--scope", "stream", "--runs", str(tmp / "runs"), "--device", url, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # exited or zombie between listing and reading
        return ""


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return {r[0]: r[1:] for r in con.execute("SELECT id, status, stage, error, measurement FROM candidates")}
    finally:
        con.close()


@pytest.mark.slow
def test_build_through_ssh_device_cleans_up(sshd, tmp_path):
    before = set(glob.glob("/tmp/scbp-edge.*"))
    proc = _build(tmp_path, sshd["url"])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    db = next((tmp_path / "runs").glob("*/run.sqlite"))
    rows = _rows(db)
    assert all(r[0] == "measured" for r in rows.values()) and len(rows) == 8
    assert all(json.loads(r[3])["device"] == sshd["url"] for r in rows.values())
    assert set(glob.glob("/tmp/scbp-edge.*")) == before, "remote temp dir left behind"


@pytest.mark.slow
def test_killed_connection_is_reported_and_resumable(sshd, tmp_path):
    """A broken connection is retried once; one that breaks again fails that candidate alone, and resumes."""
    proc = _build(tmp_path, sshd["url"], "--profile-chunk", "2")
    listener = psutil.Process(sshd["proc"].pid)
    kills, failed_seen = 0, False
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not failed_seen:
        dbs = list((tmp_path / "runs").glob("*/run.sqlite"))
        try:
            states = [r[0] for r in _rows(dbs[0]).values()] if dbs else []
        except sqlite3.OperationalError:
            states = []
        failed_seen = "failed" in states
        workers = [p for p in listener.children(recursive=True) if "worker.py" in _cmdline(p)]
        if states.count("measured") >= 2 and workers and not failed_seen:
            for child in listener.children(recursive=True):  # drop every live connection, keep the listener
                with contextlib.suppress(psutil.Error):
                    child.kill()
            kills += 1
        time.sleep(0.02)
    assert kills >= 2, "never caught a remote measurement (and its retry) in flight"
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    db = next((tmp_path / "runs").glob("*/run.sqlite"))
    rows = _rows(db)
    failed = {k: r for k, r in rows.items() if r[0] == "failed"}
    assert failed and all(r[1] == "profile" for r in failed.values()), rows
    assert all("worker" in r[2] for r in failed.values())
    measured = {k: r for k, r in rows.items() if r[0] == "measured"}
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--resume", str(db.parent)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    after = _rows(db)
    assert all(r[0] == "measured" for r in after.values())
    assert all(after[k] == v for k, v in measured.items()), "a finished measurement was redone"


def _second_sshd(sshd) -> tuple[subprocess.Popen, str]:
    """Another device: a second sshd (same keys, own port and config)."""
    d = sshd["dir"]
    port = free_port()
    cfg = (d / "sshd_config").read_text().replace(f"Port {sshd['port']}", f"Port {port}").replace(
        "sshd.pid", f"sshd-{port}.pid")
    (d / f"sshd_config_{port}").write_text(cfg)
    host_pub = (d / "host_key.pub").read_text().split()[:2]
    with open(d / "known_hosts", "a") as f:
        f.write(f"[127.0.0.1]:{port} {' '.join(host_pub)}\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / f"sshd_config_{port}")], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"ssh://root@127.0.0.1:{port}?python={sys.executable}"
        time.sleep(0.05)
    raise RuntimeError("second sshd did not start")


@pytest.mark.slow
def test_device_pool_survives_a_device_dropping_out(sshd, tmp_path):
    proc_b, url_b = _second_sshd(sshd)
    try:
        build = _build(tmp_path, sshd["url"], "--device", url_b, "--profile-chunk", "2")
        b = psutil.Process(proc_b.pid)
        deadline = time.time() + 300
        while time.time() < deadline and build.poll() is None:
            if any("worker.py" in _cmdline(p) for p in b.children(recursive=True)):
                for child in b.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                proc_b.kill()  # device B is gone for good
                break
            time.sleep(0.02)
        else:
            pytest.fail("device B never measured anything")
        out, err = build.communicate(timeout=600)
        assert build.returncode == 0, err
        rows = _rows(next((tmp_path / "runs").glob("*/run.sqlite")))
        assert len(rows) == 8 and all(r[0] == "measured" for r in rows.values()), rows
        devices = {json.loads(r[3])["device"] for r in rows.values()}
        assert sshd["url"] in devices
    finally:
        proc_b.kill()
        proc_b.wait(timeout=10)
