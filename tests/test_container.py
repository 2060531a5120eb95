"""The cpu image for real: `package --build --run` with podman/docker, real images to /predict in the container.

Skips when neither engine is installed, fails instead under SCBP_REQUIRE_CONTAINER=1 (.ci/run sets it).
The base image is a Debian made locally (scripts/make_base_image.sh), since no registry is reachable
in CI; it is kept between runs as a cache. The model image and the container are always removed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import free_port
from tests.helpers import cli

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(1500)]
ROOT = Path(__file__).resolve().parents[1]
BASE = os.environ.get("SCBP_TEST_BASE_IMAGE", "localhost/scbp-base:bookworm")


@pytest.fixture(scope="module")
def engine(monkeypatch_module) -> str:
    from scbp_edge.errors import RunError
    from scbp_edge.package.container import find_engine

    if shutil.which("podman") and "CONTAINERS_CONF" not in os.environ:
        monkeypatch_module.setenv("CONTAINERS_CONF", str(ROOT / "tests/containers.conf"))
    try:
        name = find_engine()
    except RunError as exc:
        msg = f"no working container engine ({exc}); bootstrap installs podman when run as root"
        if os.environ.get("SCBP_REQUIRE_CONTAINER") == "1":
            pytest.fail(msg + " and SCBP_REQUIRE_CONTAINER=1")
        pytest.skip(msg)
    monkeypatch_module.setenv("SCBP_CONTAINER_ENGINE", name)
    if subprocess.run([name, "image", "exists" if name == "podman" else "inspect", BASE],
                      capture_output=True).returncode != 0:
        made = subprocess.run(["bash", str(ROOT / "scripts/make_base_image.sh"), BASE], capture_output=True,
                              text=True, timeout=900)
        assert made.returncode == 0, made.stderr[-2000:]
    return name


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def run_dir(small_run) -> Path:
    """The session's shared small build (conftest.small_run); these tests only read it."""
    return small_run


@pytest.fixture(scope="module")
def served(engine, run_dir, tmp_path_factory):
    """Build the cpu context on the local base with `package --build --run`; yields (url, context, figures)."""
    ctx = tmp_path_factory.mktemp("ctx") / "c"
    tag = f"localhost/scbp-test:{os.getpid()}"
    port = free_port()
    t0 = time.perf_counter()
    res = cli("package", str(run_dir), "-o", str(ctx), "--base-image", BASE, "--tag", tag, "--run", "--port",
              str(port), timeout=1200)
    build_s = time.perf_counter() - t0
    cid = re.search(r"stop with: \w+ stop (\w+)", res.stderr)
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        url = res.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{port}", res.stdout
        ready = float(re.search(r"ready in ([\d.]+) s", res.stderr).group(1))
        size = float(re.search(r"built .*: (\d+) MB", res.stderr).group(1))
        yield url, ctx, {"image_mb": size, "ready_s": ready, "build_s": build_s, "engine": engine}
    finally:
        if cid:
            subprocess.run([engine, "stop", "-t", "2", cid.group(1)], capture_output=True, timeout=60)
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120)
    assert subprocess.run([engine, "image", "inspect", tag], capture_output=True).returncode != 0


def _predict(url: str, png: bytes) -> dict:
    req = urllib.request.Request(url + "/predict", data=png, method="POST", headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())["predictions"][0]


def test_container_predicts_what_the_run_evaluated(served, run_dir):
    """Every test image, sent as a PNG to the container: its accuracy is the run's own test accuracy."""
    import onnxruntime as ort

    from scbp_edge.data.digits import load_digits_split

    url, ctx, _ = served
    manifest = json.loads((ctx / "manifest.json").read_text())
    _, test = load_digits_split(0)
    x, y = test.tensors(tuple(manifest["seed"]["mean"]), tuple(manifest["seed"]["std"]))
    sess = ort.InferenceSession(str(ctx / "model.onnx"), providers=["CPUExecutionProvider"])
    hits = 0
    for i in range(len(test.images)):
        buf = io.BytesIO()
        Image.fromarray(test.images[i][:, :, 0], mode="L").save(buf, format="PNG")
        got = _predict(url, buf.getvalue())
        logits = sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1].numpy()})[0][0]
        ref = np.exp(logits - logits.max())
        assert np.abs(np.array(list(got["scores"].values())) - ref / ref.sum()).max() < 1e-4, i
        hits += got["index"] == int(y[i])
    assert manifest["trained"]["test_images"] == len(test.images)
    assert abs(100.0 * hits / len(test.images) - manifest["trained"]["test_accuracy"]) <= 100.0 / len(test.images)


def test_container_health_and_metrics_answer(served):
    url, _, _ = served
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(buf, format="PNG")
    _predict(url, buf.getvalue())
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert r.status == 200 and re.search(r'scbp_predict_requests_total\{code="200"\} [1-9]', text), text[:2000]


def test_package_build_without_engine_is_one_line(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, no podman on it
    monkeypatch.delenv("SCBP_CONTAINER_ENGINE", raising=False)
    res = cli("package", str(run_dir), "-o", str(tmp_path / "c"), "--build")
    assert res.returncode == 2 and "neither docker nor podman" in res.stderr and "Traceback" not in res.stderr
