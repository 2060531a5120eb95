"""Build and start a package context's image with whichever container engine is installed.

Docker and Podman take the same ``build``/``run``/``image inspect`` arguments for
what is used here, so one code path serves both. Podman's own settings (its OCI
runtime, cgroup manager, ulimits) come from ``containers.conf`` /
``$CONTAINERS_CONF``, never from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scbp_edge.errors import RunError

ENGINES = ("docker", "podman")
CONTAINER_PORT = 8080


@dataclass(frozen=True)
class Started:
    """A running container: its engine, id and the URL its server answers on."""

    engine: str
    container: str
    url: str
    ready_s: float


def _answers(engine: str) -> str | None:
    """None when ``engine`` can build and run; else why not (a docker CLI without its daemon, say)."""
    try:
        done = subprocess.run([engine, "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{engine} does not answer ({type(exc).__name__})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{engine} is installed but does not work ({last[:160]})"
    return None


def find_engine(preferred: str | None = None) -> str:
    """The engine to use: ``preferred`` (or $SCBP_CONTAINER_ENGINE), else docker, else podman, whichever works."""
    wanted = preferred or os.environ.get("SCBP_CONTAINER_ENGINE")
    if wanted and wanted not in ENGINES:
        raise RunError(f"container engine '{wanted}' is not supported; use one of {', '.join(ENGINES)}")
    names = [n for n in ([wanted] if wanted else ENGINES) if shutil.which(n)]
    if not names:
        if wanted:
            raise RunError(f"container engine '{wanted}' is not installed; install it or leave --engine out")
        raise RunError("neither docker nor podman is installed; install one (e.g. apt-get install podman), "
                       "or copy the context to a machine that has one and run: docker build -t TAG CONTEXT")
    problems = []
    for name in names:
        why = _answers(name)
        if why is None:
            return name
        problems.append(why)
    raise RunError("; ".join(problems) + "; start its daemon (systemctl start docker) or install podman")


def _run(argv: list[str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"{what} took longer than {timeout:.0f} s ({' '.join(argv[:3])} ...); "
                       "check the engine and the network, then retry") from None
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip()
        tail = text.splitlines()[-1:] or ["no output"]
        raise RunError(f"{what} failed ({argv[0]} exit {done.returncode}): {tail[0]}{_hint(argv[0], text)}")
    return done.stdout


def _hint(engine: str, text: str) -> str:
    """The cause and fix of podman failures that a host's settings cause, not the image."""
    if "podman" in Path(engine).name and ("rlimit" in text or "cgroup" in text.lower()):
        return ("; this host's podman cannot apply its default ulimits or cgroup manager (seen on VMs with hybrid "
                "cgroups): point CONTAINERS_CONF at a file with [containers] default_ulimits = [] and [engine] "
                "cgroup_manager = \"cgroupfs\", runtime = \"runc\" (README, Shipping), or use --engine docker")
    return ""


def build_image(context: Path, tag: str, engine: str, *, network: str | None = None, no_cache: bool = False,
                timeout: float = 1800.0) -> int:
    """Build ``context`` as ``tag``; returns the image size in bytes as the engine reports it."""
    if not (context / "Dockerfile").is_file() or not (context / "manifest.json").is_file():
        raise RunError(f"'{context}' is not a package context (no Dockerfile/manifest.json); "
                       "write one with scbp-edge package RUN -o DIR")
    argv = [engine, "build", "-t", tag]
    if network:
        argv += ["--network", network]  # RUN pip install must reach the index the host reaches
    if no_cache:
        argv.append("--no-cache")
    _run([*argv, str(context)], f"building image {tag}", timeout)
    return image_size(tag, engine)


def image_size(tag: str, engine: str) -> int:
    """The image's size in bytes (the engine's own figure: all layers, uncompressed)."""
    text = _run([engine, "image", "inspect", "--format", "{{.Size}}", tag], f"inspecting image {tag}", 60)
    try:
        return int(text.strip())
    except ValueError:
        raise RunError(f"{engine} reported no size for image {tag} ({text.strip()[:80]!r})") from None


def _running(container: str, engine: str) -> bool:
    done = subprocess.run([engine, "inspect", "--format", "{{.State.Running}}", container], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.returncode == 0 and done.stdout.strip() == "true"


def wait_healthy(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> float:
    """Poll ``url``/healthz until it answers 200; returns the seconds waited.

    ``alive`` is asked about once a second, so a container that died is reported at once
    rather than after ``timeout`` (which must cover a first start that builds an engine).
    """
    start = last_check = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except (urllib.error.URLError, OSError):
            pass
        now = time.perf_counter()
        if now - start > timeout:
            raise RunError(f"{url}/healthz did not answer within {timeout:.0f} s; see the container's log "
                           "(docker logs ID)")
        if now - last_check > 1.0:
            last_check = now
            if not alive():
                raise RunError("the container exited before its server answered; run the image in the "
                               "foreground (without -d) to see why")
        time.sleep(0.05)


def run_argv(tag: str, engine: str, run_args: list[str], *, port: int = 8080, host: str = "127.0.0.1") -> list[str]:
    """The ``run`` command line: detached, removed on stop, the target's options, the port on ``host``."""
    return [engine, "run", "-d", "--rm", *run_args, "-p", f"{host}:{port}:{CONTAINER_PORT}", tag]


def run_image(tag: str, engine: str, *, run_args: list[str] | None = None, port: int = 8080,
              host: str = "127.0.0.1", ready_timeout: float = 1800.0) -> Started:
    """Start ``tag`` detached with its port published on ``host:port``; returns once /healthz answers.

    ``run_args`` are the target's own options (validated by the target loader): GPU access, volumes.
    """
    argv = run_argv(tag, engine, run_args or [], port=port, host=host)
    start = time.perf_counter()
    container = _run(argv, f"starting image {tag}", 120).strip().splitlines()[-1]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        wait_healthy(url, ready_timeout, lambda: _running(container, engine))
    except RunError:
        stop(container, engine)
        raise
    return Started(engine, container, url, time.perf_counter() - start)


def stop(container: str, engine: str) -> None:
    """Stop (and so remove, as it ran with --rm) a container; a gone container is not an error."""
    subprocess.run([engine, "stop", "-t", "2", container], capture_output=True, timeout=60, check=False)


def remove_image(tag: str, engine: str) -> None:
    """Remove an image; a missing one is not an error."""
    subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
