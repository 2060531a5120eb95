"""Package + runtime: contexts per target, hadolint, a real HTTP server from the context."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import cli, fast_target


@pytest.fixture(scope="module")
def run_dir(small_run) -> Path:
    """The session's shared small build (conftest.small_run); these tests only read it."""
    return small_run


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", "jetson-nano", "desktop-gpu"])
def test_context_per_target_passes_hadolint(run_dir, tmp_path, target):
    ctx = tmp_path / target
    res = cli("package", str(run_dir), "--candidate", "best", "--target", target, "-o", str(ctx))
    assert res.returncode == 0, res.stderr
    for name in ("Dockerfile", "model.onnx", "manifest.json", "runtime/server.py", "runtime/model.py"):
        assert (ctx / name).is_file(), name
    manifest = json.loads((ctx / "manifest.json").read_text())
    assert len(manifest["sha256"]) == 64 and manifest["measured"]["latency"]["p50_ms"] > 0
    text = (ctx / "Dockerfile").read_text()
    assert "@@" not in text and "USER scbp" in text and "HEALTHCHECK" in text
    assert not any("torch" in ln.lower() for ln in text.splitlines() if not ln.startswith("#"))
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    lint = subprocess.run([hadolint, "--failure-threshold", "warning", str(ctx / "Dockerfile")],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", ["jetson-nano", "jetson-orin-nano", "desktop-gpu"])
def test_gpu_image_structure(run_dir, tmp_path, target):
    """What the GPU images need and that no GPU here can check by running them (they were never built)."""
    from scbp_edge.targets import load_target

    t = load_target(target)
    ctx = tmp_path / target
    res = cli("package", str(run_dir), "--target", target, "-o", str(ctx))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in (ctx / "Dockerfile").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == f"ARG BASE_IMAGE={t.base_image}" and lines[1] == "FROM ${BASE_IMAGE}"
    if target.startswith("jetson"):
        assert t.base_image.startswith("nvcr.io/nvidia/l4t-")
    run = next(ln for ln in lines if ln.startswith("RUN"))
    body = " ".join(lines[lines.index(run):lines.index(next(ln for ln in lines if ln.startswith("WORKDIR")))])
    assert "--groups video" in body and "/cache" in body  # the GPU device nodes; the engine cache
    assert not any(p in body for p in ("torch", "tensorrt", "cuda-python", "pycuda"))  # TensorRT comes from the base
    assert "USER scbp" in lines and 'VOLUME ["/cache"]' in lines
    precision = json.loads((ctx / "manifest.json").read_text())["precision"]
    assert f"SCBP_PRECISION={precision}" in " ".join(lines)
    start = int(re.search(r"--start-period=(\d+)s", " ".join(lines)).group(1))
    assert start >= 600  # the first start builds the engine on the device
    assert {p.name for p in (ctx / "runtime").iterdir()} >= {"server.py", "session.py", "cudart.py", "trt_engine.py"}
    gpu = ["--runtime", "nvidia"] if target.startswith("jetson") else ["--gpus", "all"]
    assert t.run_args[:2] == gpu and "scbp-cache:/cache" in t.run_args
    assert f"docker run {' '.join(t.run_args)} -p 8080:8080" in res.stderr.replace("\n", "")


def _post(url, body: bytes, ctype: str, length: int | None = None):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    if length is not None:
        req.add_header("Content-Length", str(length))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    ctx = tmp_path_factory.mktemp("ctx")
    assert cli("package", str(run_dir), "-o", str(ctx)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "runtime.server", "model.onnx", "--host", "127.0.0.1",
                             "--port", "0"], cwd=ctx, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving" in line, line
    url = line.strip().rsplit(" ", 1)[-1]
    yield url, ctx
    proc.terminate()
    proc.wait(timeout=10)


def test_server_predictions_match_pytorch_on_real_images(server, run_dir):
    from scbp_edge.data.digits import load_digits_split
    from scbp_edge.derive.io import load_derived

    url, ctx = server
    manifest = json.loads((ctx / "manifest.json").read_text())
    model, _ = load_derived(run_dir / manifest["trained"]["checkpoint"])
    _, test = load_digits_split(0)
    x, _ = test.tensors(tuple(manifest["seed"]["mean"]), tuple(manifest["seed"]["std"]))
    agree = 0
    for i in range(20):
        buf = io.BytesIO()
        Image.fromarray(test.images[i][:, :, 0], mode="L").save(buf, format="PNG")
        code, body = _post(url + "/predict", buf.getvalue(), "image/png")
        assert code == 200, body
        with torch.no_grad():
            ref = torch.softmax(model(x[i : i + 1]), 1)[0].numpy()
        got = np.array(list(body["predictions"][0]["scores"].values()))
        assert np.abs(got - ref).max() < 1e-4
        agree += body["predictions"][0]["index"] == int(ref.argmax())
    assert agree == 20


def test_bad_requests_get_4xx_and_server_keeps_serving(server):
    url, _ = server
    assert _post(url + "/predict", np.zeros((1, 3, 32, 32), np.float32).tobytes(), "application/x-npy")[0] == 400
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 3, 32, 32), np.float32))
    code, body = _post(url + "/predict", buf.getvalue(), "application/x-npy")
    assert code == 400 and "does not match" in body["error"]
    assert _post(url + "/predict", b"definitely not a png", "image/png")[0] == 400
    assert _post(url + "/predict", b"hello", "text/plain")[0] == 415
    code, body = _post(url + "/predict", b"x" * 16, "image/png", length=9 * 1024 * 1024)
    assert code == 413 and "limit" in body["error"]
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        assert r.status == 200


def test_concurrent_clients_all_succeed(server):
    url, _ = server
    body = json.dumps({"tensor": np.zeros((1, 1, 16, 16)).tolist()}).encode()
    codes: list[int] = []
    lock = threading.Lock()

    def client():
        for _ in range(50):
            c, _ = _post(url + "/predict", body, "application/json")
            with lock:
                codes.append(c)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 400
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    ok = {s.labels["code"]: s.value for s in families["scbp_predict_requests"].samples}
    assert ok["200"] >= 400
    lat = {s.labels.get("quantile"): s.value for s in families["scbp_predict_latency_seconds"].samples}
    assert 0 < lat["0.5"] <= lat["0.99"]


def test_package_unknown_candidate_is_one_line(run_dir, tmp_path):
    res = cli("package", str(run_dir), "--candidate", "nope", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "no candidate 'nope'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_served_int8_model_predicts_what_its_evaluation_saw(tmp_path):
    """The package ships the int8 QDQ file itself; served on real images it answers as ONNX Runtime did in the build."""
    import onnxruntime as ort

    from scbp_edge.data.digits import load_digits_split

    res = cli("build", "--target", str(fast_target(tmp_path)), "--precision", "fp32,int8", "--ratios", "0,0.5",
              "--limit", "1", "--runs", str(tmp_path), "--top-k", "1", "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    rep = json.loads((run / "report.json").read_text())
    cand = next(c for c in rep["candidates"] if c["precision"] == "int8" and c["trained"])
    assert cand["trained"]["onnx"].endswith("_int8.onnx") and cand["trained"]["test_accuracy"] > 80
    ctx = tmp_path / "ctx"
    assert cli("package", str(run), "--candidate", cand["id"], "-o", str(ctx)).returncode == 0
    manifest = json.loads((ctx / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert (ctx / "model.onnx").read_bytes() == (run / cand["trained"]["onnx"]).read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "runtime.server", "model.onnx", "--host", "127.0.0.1", "--port",
                             "0"], cwd=ctx, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip().split(" on ")[1].split()[0]
        _, test = load_digits_split(0)
        x, _ = test.tensors(tuple(manifest["seed"]["mean"]), tuple(manifest["seed"]["std"]))
        sess = ort.InferenceSession(str(ctx / "model.onnx"), providers=["CPUExecutionProvider"])
        for i in range(20):
            buf = io.BytesIO()
            Image.fromarray(test.images[i][:, :, 0], mode="L").save(buf, format="PNG")
            code, body = _post(url + "/predict", buf.getvalue(), "image/png")
            assert code == 200, body
            ref = sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1].numpy()})[0][0]
            assert body["predictions"][0]["index"] == int(ref.argmax())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_podman_that_cannot_set_rlimits_gets_the_cause_and_the_fix(tmp_path):
    """Issue 41 row 16: the failure podman 4.3 gives on hybrid-cgroup VMs, from a real (stand-in) engine binary."""
    from scbp_edge.errors import RunError
    from scbp_edge.package.container import run_image

    engine = tmp_path / "podman"
    engine.write_text("#!/bin/sh\necho 'Error: runc create failed: unable to start container process: error during "
                      "container init: error setting rlimits for ready process: error setting rlimit type 7: "
                      "operation not permitted' >&2\nexit 126\n")
    engine.chmod(0o755)
    with pytest.raises(RunError) as err:
        run_image("scbp-test:none", str(engine), port=1)
    msg = str(err.value)
    assert "podman exit 126" in msg and "error setting rlimit" in msg
    assert "CONTAINERS_CONF" in msg and "default_ulimits = []" in msg and "--engine docker" in msg
