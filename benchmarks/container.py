"""The cpu image, measured: size, build time, and seconds from `run` to a 200 from /healthz.

Makes the README's default run (`scbp-edge build --target cpu`), packages its
selection on a base image (default: the local Debian that scripts/make_base_image.sh
makes), builds it without layer cache, then starts it --starts times.  Goals
(issue 19): image <= 300 MB, ready <= 5 s.  Writes benchmarks/results/container.{json,md}.
Run alone:  .venv/bin/python benchmarks/container.py [--base-image IMAGE] [--starts 5]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import OUT, ROOT, parser, publish

GOAL_MB, GOAL_READY_S = 300.0, 5.0


def cli(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"scbp-edge {' '.join(args)} failed: {res.stderr[-2000:]}")
    return res.stdout


def measure(base: str, starts: int) -> dict:
    from scbp_edge.lab import container

    if "CONTAINERS_CONF" not in os.environ:
        os.environ["CONTAINERS_CONF"] = str(ROOT / "tests/containers.conf")
    engine = container.find_engine()
    tag = "localhost/scbp-bench:cpu"
    with tempfile.TemporaryDirectory() as tmp:
        run = json.loads(cli("build", "--target", "cpu", "--runs", tmp, "--json"))["run_dir"]
        ctx = Path(tmp) / "ctx"
        cli("package", run, "-o", str(ctx), "--base-image", base)
        t0 = time.perf_counter()
        size = container.build_image(ctx, tag, engine, no_cache=True)
        build_s = time.perf_counter() - t0
        model_mb = (ctx / "model.onnx").stat().st_size / 1e6
    ready = []
    try:
        for _ in range(starts):
            started = container.run_image(tag, engine, port=18931)
            ready.append(started.ready_s)
            container.stop(started.container, engine)
            time.sleep(0.5)  # the port is released once the container is gone
    finally:
        container.remove_image(tag, engine)
    version = subprocess.run([engine, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "engine": version, "base_image": base, "base_mb": round(container.image_size(base, engine) / 1e6, 1),
        "image_mb": round(size / 1e6, 1), "model_mb": round(model_mb, 3), "build_s_no_cache": round(build_s, 1),
        "ready_s": [round(r, 3) for r in ready], "ready_s_median": round(statistics.median(ready), 3),
        "ready_s_max": round(max(ready), 3), "goals": {"image_mb": GOAL_MB, "ready_s": GOAL_READY_S},
        "meets_goals": size / 1e6 <= GOAL_MB and max(ready) <= GOAL_READY_S,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(r: dict) -> str:
    return "\n".join([
        "# Container image (cpu target)", "",
        f"Measured {r['measured_at']} with {r['engine']} on {r['machine']}.", "",
        f"Command: `.venv/bin/python benchmarks/container.py --base-image {r['base_image']}`", "",
        "| figure | value | goal |", "|---|---|---|",
        f"| image size (engine's figure, all layers) | {r['image_mb']} MB | <= {r['goals']['image_mb']:.0f} MB |",
        f"| of which base image | {r['base_mb']} MB | |",
        f"| of which model | {r['model_mb']} MB | |",
        f"| ready: `run` to 200 from /healthz, median of {len(r['ready_s'])} | {r['ready_s_median']} s | |",
        f"| ready, worst start | {r['ready_s_max']} s | <= {r['goals']['ready_s']:.0f} s |",
        f"| build, no layer cache (pip installs numpy, onnxruntime, pillow) | {r['build_s_no_cache']} s | |",
        "", f"Meets both goals: **{'yes' if r['meets_goals'] else 'no'}**.",
        "The base is Debian bookworm (minbase + python3 + pip) made by `scripts/make_base_image.sh`, "
        "since no registry is reachable here; the default base for users is the target's `base_image`, "
        "whose size was not measured here.", "",
    ])


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--base-image", default="localhost/scbp-base:bookworm")
    ap.add_argument("--starts", type=int, default=5)
    a = ap.parse_args()
    r = measure(a.base_image, a.starts)
    publish(OUT, "container", r, markdown(r))


if __name__ == "__main__":
    main()
