"""The served cpu image under load (issue 14, item 7): 16 clients x 100 requests, three times.

Makes the README's default run, packages its selection on a local base image (as
benchmarks/container.py does), builds and starts the image, then sends real digit PNGs
to /predict from 16 client threads, 100 requests each, in three passes.  Records errors,
client-side p50/p90/p99 per pass, and the server process's RSS (read from /proc on this
host, the container's main process) after start and after each pass.  Goals: 0 errors,
p99 <= 3x p50, RSS flat (growth from pass 1 to pass 3 <= 5 %).  The clients share the
2 cores with the server, as they would not on a robot.  Writes
benchmarks/results/server_load.{json,md}.  Run alone:  .venv/bin/python benchmarks/server_load.py
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _common import OUT, ROOT, parser, publish
from container import cli


def pngs() -> list[bytes]:
    """The digits test split as PNG files, the bytes a camera client would send."""
    from PIL import Image

    from scbp_edge.lab import load_digits_split

    _, test = load_digits_split(0)
    out = []
    for img in test.images:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0], mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def rss_mb(container: str, engine: str) -> float:
    """Resident memory of the container's main process, from this host's /proc."""
    pid = subprocess.run([engine, "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                         text=True, check=True).stdout.strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def load_pass(url: str, images: list[bytes], clients: int, requests: int) -> dict[str, Any]:
    """``clients`` threads, ``requests`` each; latencies of the answered ones, and every failure counted."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for i in range(requests):
            body = images[(c * requests + i) % len(images)]
            req = urllib.request.Request(url + "/predict", data=body, method="POST",
                                         headers={"Content-Type": "image/png"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    json.loads(r.read())
                with lock:
                    lat.append(time.perf_counter() - t)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                with lock:
                    errors.append(type(exc).__name__)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1000
    return {"answered": len(lat), "errors": len(errors), "error_kinds": sorted(set(errors)),
            "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "throughput_rps": len(lat) / wall}


def main() -> int:
    from scbp_edge.lab import container

    ap = parser(__doc__)
    ap.add_argument("--base-image", default="localhost/scbp-base:bookworm")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=100)
    a = ap.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "tests/containers.conf"))
    engine = container.find_engine()
    tag = "localhost/scbp-load:cpu"
    images = pngs()
    with tempfile.TemporaryDirectory() as tmp:
        run = json.loads(cli("build", "--target", "cpu", "--runs", tmp, "--json"))["run_dir"]
        ctx = Path(tmp) / "ctx"
        cli("package", run, "-o", str(ctx), "--base-image", a.base_image)
        container.build_image(ctx, tag, engine)
    started = container.run_image(tag, engine, port=18932)
    try:
        rss = [rss_mb(started.container, engine)]
        passes = []
        for i in range(3):
            passes.append(load_pass(started.url, images, a.clients, a.requests))
            rss.append(rss_mb(started.container, engine))
            print(f"pass {i + 1}: {passes[-1]}, rss {rss[-1]:.1f} MB", flush=True)
    finally:
        container.stop(started.container, engine)
        container.remove_image(tag, engine)
    growth = rss[3] / rss[1] - 1
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
           "engine": subprocess.run([engine, "--version"], capture_output=True, text=True).stdout.strip(),
           "command": "python benchmarks/server_load.py", "clients": a.clients, "requests": a.requests,
           "passes": passes, "rss_mb": rss, "rss_growth_pass1_to_3": growth,
           "goals": {"errors": sum(p["errors"] for p in passes) == 0,
                     "p99_within_3x_p50": all(p["p99_ms"] <= 3 * p["p50_ms"] for p in passes),
                     "rss_flat": growth <= 0.05}}
    publish(OUT, "server_load", res, markdown(res))
    return 0


def markdown(res: dict[str, Any]) -> str:
    g = res["goals"]
    lines = ["# The served cpu image under load", "",
             f"{res['when']} with {res['engine']} on {res['machine']}. Command: `{res['command']}` on an idle "
             f"machine; {res['clients']} client threads x {res['requests']} PNG requests per pass, on the same 2 "
             "cores as the server.", "",
             "| pass | answered | errors | p50 ms | p90 ms | p99 ms | p99/p50 | req/s | server RSS after (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, p in enumerate(res["passes"], 1):
        lines.append(f"| {i} | {p['answered']} | {p['errors']} | {p['p50_ms']:.1f} | {p['p90_ms']:.1f} | "
                     f"{p['p99_ms']:.1f} | {p['p99_ms'] / p['p50_ms']:.2f} | {p['throughput_rps']:.0f} | "
                     f"{res['rss_mb'][i]:.1f} |")
    lines += ["", f"Server RSS when ready: {res['rss_mb'][0]:.1f} MB; growth from pass 1 to pass 3: "
              f"{100 * res['rss_growth_pass1_to_3']:+.1f} %.", "",
              f"Goals: 0 errors **{'met' if g['errors'] else 'not met'}**; p99 <= 3x p50 "
              f"**{'met' if g['p99_within_3x_p50'] else 'not met'}**; RSS flat (<= 5 %) "
              f"**{'met' if g['rss_flat'] else 'not met'}**."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
