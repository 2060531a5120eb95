"""An SSH device: ``ssh://user@host[:port][?python=PATH&bin=DIR]`` driven through the system ``ssh``.

``python`` is the device's interpreter (default ``python3``); ``bin`` is a
directory searched first for trtexec, tegrastats and nvpmodel (TensorRT
installed outside JetPack's places); ``cache`` is where the device keeps
built TensorRT engines (default ``~/.cache/scbp-edge/engines``), which
outlive a run because a Jetson engine build takes minutes.

The user's ~/.ssh/config, agent and jump hosts apply; host-key checking is
left as configured (never disabled).  Every remote command argument is quoted
with :func:`shlex.quote`; uploads stream through ``ssh`` stdin, bounded in size.
One master connection per device carries every upload and launch
(ControlMaster, its socket in a private temporary folder), instead of a
handshake each.  ``SCBP_SSH_CONFIG`` names an extra ssh config file
(``ssh -F``), for tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from scbp_edge.errors import ProfileError, TargetError

STALE_MINUTES = 24 * 60  # a temp dir untouched this long belongs to a run whose connection was lost
MAX_UPLOAD = 1 << 30  # 1 GiB: no candidate model is near this; protects the device's disk
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")  # never a leading '-': ssh would read an option
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_PATH = re.compile(r"^[A-Za-z0-9._/+-]+$")


def check_urls(urls: Sequence[str]) -> None:
    """Refuse the first malformed ``--device`` URL in one line (TargetError), before any thread or command starts.

    Parsing opens nothing: a device connects on first use.
    """
    for url in urls:
        SshDevice(url)


class SshDevice:
    """One remote machine reached with the system OpenSSH client."""

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
        except ValueError:  # an unclosed IPv6 bracket, for one
            raise TargetError(f"--device '{url}' is not a valid URL; write ssh://user@host[:port]") from None
        if parts.scheme != "ssh" or not parts.hostname:
            raise TargetError(f"--device '{url}' is not of the form ssh://user@host[:port]")
        if not _HOST.match(parts.hostname) or (parts.username and not _USER.match(parts.username)):
            raise TargetError(f"--device '{url}' has characters not allowed in a user or host name")
        try:
            self.port = parts.port
        except ValueError:
            raise TargetError(f"--device '{url}' has an invalid port") from None
        query = parse_qs(parts.query)
        self.python = query.get("python", ["python3"])[0]
        self.bin_dir = query.get("bin", [None])[0]
        self.cache_dir = query.get("cache", [None])[0]
        for key, val in (("python", self.python), ("bin", self.bin_dir), ("cache", self.cache_dir)):
            if val is not None and not _PATH.match(val):
                raise TargetError(f"--device '{url}': {key}= must be a plain path such as /opt/venv/bin/python3")
        self.url = url
        self.dest = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self._control: str | None = None  # private folder of this device's master connection socket

    def _control_path(self) -> str:
        if self._control is None:
            self._control = tempfile.mkdtemp(prefix="scbp-ssh-")  # 0700: nobody else can use the master
            atexit.register(self.close)
        return f"{self._control}/master"

    def worker_config(self) -> dict[str, str]:
        """Device-specific keys for the timing worker's configuration line."""
        cfg = {"bin_dir": self.bin_dir, "engine_cache": self.cache_dir}
        return {k: v for k, v in cfg.items() if v}

    def _options(self) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self._control_path()}", "-o", "ControlPersist=120"]
        if os.environ.get("SCBP_SSH_CONFIG"):
            argv += ["-F", os.environ["SCBP_SSH_CONFIG"]]
        if self.port:
            argv += ["-p", str(self.port)]
        return argv

    def ssh_argv(self) -> list[str]:
        return [*self._options(), "--", self.dest]

    def close(self) -> None:
        """End the master connection (it would otherwise linger for ControlPersist seconds)."""
        if self._control is None:
            return
        if os.path.exists(f"{self._control}/master"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*self._options(), "-O", "exit", "--", self.dest], capture_output=True, timeout=10)
        shutil.rmtree(self._control, ignore_errors=True)
        self._control = None

    def command(self, *args: str) -> list[str]:
        """Local argv that runs ``args`` on the device, each argument quoted for the remote shell."""
        return [*self.ssh_argv(), " ".join(shlex.quote(a) for a in args)]

    def run(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        try:
            res = subprocess.run(self.command(*args), input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            # Seen in the field: the account's ~/.bashrc (sourced by ssh's non-interactive shell) blocking.
            raise ProfileError(f"{self.url}: '{args[0]}' gave no answer within {timeout:.0f}s (if even "
                               "`ssh HOST true` hangs, the account's ~/.bashrc is blocking)") from None
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip().splitlines()
            raise ProfileError(f"{self.url}: '{args[0]}' failed ({err[-1] if err else f'exit {res.returncode}'})")
        return res.stdout.decode(errors="replace")

    def check(self, imports: tuple[str, ...] = ("numpy", "onnxruntime")) -> None:
        """One line naming the problem if the device cannot be reached or lacks Python (and ``imports``)."""
        try:
            self.run(self.python, "-c", f"import sys, {', '.join(('json',) + tuple(imports))}", timeout=60)
        except ProfileError as exc:
            need = f" with {' and '.join(imports)}" if imports else " (3.6 or newer)"
            raise ProfileError(
                f"device {self.url} is not usable: {exc}; check the address, your SSH key and host key "
                f"(ssh-keyscan/known_hosts), and that {self.python}{need} is installed "
                "there (or pass ?python=PATH)"
            ) from None

    def sweep_stale(self) -> None:
        """Remove this user's scbp-edge temp dirs untouched for a day.

        A lost connection cannot clean up after itself; a live run touches its
        dir every round (uploads, trace files), so only orphans are this old.
        """
        script = ('find /tmp -maxdepth 1 -type d -name "scbp-edge.*" -user "$(id -u)" -mmin +"$1" '
                  '-exec rm -rf {} +')
        self.run("sh", "-c", script, "sh", str(STALE_MINUTES), timeout=60)

    def mktemp(self) -> str:
        return self.run("mktemp", "-d", "/tmp/scbp-edge.XXXXXXXX").strip()

    def upload(self, local: Path, remote: str) -> None:
        size = local.stat().st_size
        if size > MAX_UPLOAD:
            raise ProfileError(f"{local} is {size} bytes, over the {MAX_UPLOAD}-byte upload limit")
        self.run("sh", "-c", 'cat > "$1"', "sh", remote, stdin=local.read_bytes(), timeout=600)

    def remove(self, remote: str) -> None:
        self.run("rm", "-rf", "--", remote)
