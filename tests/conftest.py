"""Shared fixtures: ../shared data (skip when absent, fail when SCBP_REQUIRE_SHARED=1); a real sshd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; skips (or fails under SCBP_REQUIRE_SHARED=1) when absent."""
    if not (SHARED / "README.md").is_file():
        msg = f"../shared not found at {SHARED}"
        if os.environ.get("SCBP_REQUIRE_SHARED") == "1":
            pytest.fail(msg + " and SCBP_REQUIRE_SHARED=1")
        pytest.skip(msg)
    return SHARED


@pytest.fixture(scope="session")
def cifar_test(shared: Path):
    """The shared CIFAR-10 JPEG test split, decoded once per session."""
    from scbp_edge.data import read_split

    return read_split(shared / "data/cifar10-jpeg/test.tar.gz", (32, 32))


SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_sshd(d: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("sshd did not start: " + proc.stderr.read1(2000).decode(errors="replace"))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An OpenSSH server on 127.0.0.1 with throwaway keys; host-key checking on (module-scoped)."""
    if not Path(SSHD).exists() or not shutil.which("ssh"):
        pytest.skip("openssh-server not installed (bootstrap installs it)")
    d = tmp_path_factory.mktemp("sshd")
    port = free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "user_key")], check=True)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    # The device account gets an empty home: the remote login shell would otherwise source this machine's
    # ~/.bashrc, whose start-up (a pyenv rehash waiting on a stale lock, seen in CI) can hang every command.
    (d / "home").mkdir()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nPidFile {d / 'sshd.pid'}\nSetEnv HOME={d / 'home'}\n"
    )
    host_pub = (d / "host_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_pub)}\n")
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
    )
    proc = _start_sshd(d, port)
    old = os.environ.get("SCBP_SSH_CONFIG")
    os.environ["SCBP_SSH_CONFIG"] = str(d / "ssh_config")
    # The "device" is this machine; its Python with numpy+onnxruntime is the venv's.
    yield {"url": f"ssh://root@127.0.0.1:{port}?python={sys.executable}", "dir": d, "port": port, "proc": proc}
    proc.terminate()
    proc.wait(timeout=10)
    if old is None:
        os.environ.pop("SCBP_SSH_CONFIG", None)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """One small finished build (two ratios, stream scope, one network fine-tuned) shared by every test that only
    reads a run: report, package and container tests.  A test that changes a run copies it first."""
    import json

    from tests.helpers import cli, fast_target

    tmp = tmp_path_factory.mktemp("small-run")
    res = cli("build", "--target", str(fast_target(tmp)), "--ratios", "0,0.5", "--scope", "stream", "--runs", str(tmp),
              "--top-k", "1", "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    return Path(json.loads(res.stdout)["run_dir"])


@pytest.fixture(scope="module")
def digits_bench():
    """The embedded default seed (trained on digits, cached) with the digits train and test tensors."""
    from scbp_edge import defaults
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.data.digits import load_digits_split
    from scbp_edge.seeds import load_seed

    seed = load_seed(defaults.DEFAULT_SEED, defaults.default_seed_weights(), input_shape=defaults.DEFAULT_INPUT,
                     mean=defaults.DIGITS_MEAN, std=defaults.DIGITS_STD)
    wb = Workbench(SeedOptions(defaults.DEFAULT_SEED, in_channels=1, input_size=16), seed)
    train, test = load_digits_split(0)
    return wb, train.tensors(defaults.DIGITS_MEAN, defaults.DIGITS_STD), test.tensors(
        defaults.DIGITS_MEAN, defaults.DIGITS_STD)
