"""The served model against hostile clients: bounded in count and time, against 127.0.0.1 only."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``scbp-edge serve`` on a real ONNX model, with a bearer token and a 2 s request deadline."""
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx

    tmp = tmp_path_factory.mktemp("serve")
    wb = Workbench(SeedOptions("cifar-resnet20"))
    export_onnx(wb.seed.model, (3, 32, 32), tmp / "m.onnx")
    (tmp / "token").write_text("s3cret\n")
    proc = subprocess.Popen([sys.executable, "-m", "scbp_edge.cli.main", "serve", str(tmp / "m.onnx"), "--port", "0",
                             "--token-file", str(tmp / "token"), "--request-timeout", "2", "--workers", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving" in line, line + proc.stderr.read()
    url = line.split(" on ", 1)[1].split()[0]
    yield url, proc
    proc.terminate()
    proc.wait(timeout=10)


def _req(url, path, body=None, ctype="application/json", token="s3cret", headers=None):
    req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _raw(url, data: bytes, read: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        return s.recv(4096) if read else b""


def _ok(url):
    x = np.zeros((1, 3, 32, 32)).tolist()
    return _req(url, "/predict", json.dumps({"tensor": x}).encode())[0] == 200


def test_token_is_required_except_for_health(served):
    url, _ = served
    assert _req(url, "/healthz", token=None)[0] == 200
    assert _req(url, "/metrics", token=None)[0] == 401
    assert _req(url, "/predict", b"{}", token="wrong")[0] == 401
    assert _ok(url)


def test_the_auth_scheme_is_case_insensitive_and_the_token_is_not(served):
    """RFC 7235: 'bearer' and 'BEARER' name the same scheme; the credential itself must match exactly."""
    url, _ = served
    x = json.dumps({"tensor": np.zeros((1, 3, 32, 32)).tolist()}).encode()
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert _req(url, "/predict", x, token=None, headers={"Authorization": f"{scheme} s3cret"})[0] == 200
    assert _req(url, "/predict", x, token=None, headers={"Authorization": "bearer S3CRET"})[0] == 401
    assert _req(url, "/predict", x, token=None, headers={"Authorization": "Basic s3cret"})[0] == 401
    assert _req(url, "/predict", x, token=None, headers={"Authorization": "s3cret"})[0] == 401


@pytest.mark.parametrize("length", ["-1", "abc", "1e9", " -5"])
def test_bad_content_length_is_refused_before_reading(served, length):
    url, proc = served
    rss = psutil.Process(proc.pid).memory_info().rss
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    answer = _raw(url, head + b"[" * 100_000)
    assert answer.split(b" ")[1] in (b"400", b"411"), answer[:100]
    assert psutil.Process(proc.pid).memory_info().rss - rss < 30 * 2**20
    assert _ok(url)


def test_missing_content_length_is_411(served):
    url, _ = served
    answer = _raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                       b"Content-Type: application/json\r\n\r\n")
    assert answer.split(b" ")[1] == b"411"


def test_decompression_bomb_is_refused_without_decoding(served):
    from PIL import Image

    url, proc = served
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # a few hundred KB, 144 megapixels
    rss = psutil.Process(proc.pid).memory_info().rss
    code, body = _req(url, "/predict", buf.getvalue(), "image/png")
    assert code == 413 and b"12000x12000" in body
    assert psutil.Process(proc.pid).memory_info().rss - rss < 50 * 2**20


@pytest.mark.parametrize(("body", "ctype", "words"), [
    (b'{"tensor": [[[NaN]]]}', "application/json", b"NaN"),
    (json.dumps({"tensor": np.full((1, 3, 32, 32), 1e39).tolist()}).encode(), "application/json", b"float32"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", b"nested too deeply"),
    (json.dumps(np.zeros((1, 3, 32, 32)).tolist()).encode(), "application/json", b'{\\"tensor\\"'),
])
def test_non_finite_and_malformed_tensors_are_400(served, body, ctype, words):
    url, _ = served
    code, answer = _req(url, "/predict", body, ctype)
    assert code == 400 and words in answer, answer


def test_complex_npy_is_400(served):
    url, _ = served
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 3, 32, 32), np.complex64))
    code, answer = _req(url, "/predict", buf.getvalue(), "application/x-npy")
    assert code == 400 and b"complex" in answer


def test_slow_and_idle_clients_cannot_starve_the_server(served):
    url, proc = served
    host, port = url.removeprefix("http://").split(":")
    slow = []
    for _ in range(20):  # five times the worker count: half a header each, then nothing
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    idle = socket.create_connection((host, int(port)), timeout=10)
    t = time.perf_counter()
    assert _ok(url)
    assert time.perf_counter() - t < 15, "a normal client waited too long behind slow ones"
    assert len(psutil.Process(proc.pid).threads()) < 12, "threads grew with the clients"
    deadline = time.time() + 15
    for s in [*slow, idle]:  # every one is dropped once its 2 s request deadline has passed
        s.settimeout(max(0.1, deadline - time.time()))
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            pytest.fail("a slow client was still connected long after the request deadline")
        assert data == b"", data[:80]
        s.close()


def _dribble(host: str, port: int, closed: list, stop: float) -> None:
    """A request line and headers a byte every 50 ms, never finished; records when the server cut it."""
    data = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    s = socket.create_connection((host, port), timeout=10)
    t0 = time.perf_counter()
    try:
        for b in data:
            if time.perf_counter() > stop:
                return
            s.sendall(bytes([b]))
            time.sleep(0.05)
    except OSError:  # reset or broken pipe: the server closed the connection
        closed.append(time.perf_counter() - t0)
    finally:
        s.close()


def test_a_request_that_arrives_a_byte_at_a_time_is_cut_at_its_deadline_and_health_still_answers(served):
    """Issue 57: --workers clients sending a byte at a time held the server for 25 s, before authentication."""
    import threading

    url, _ = served  # --workers 4 --request-timeout 2
    host, port = url.removeprefix("http://").split(":")
    closed: list[float] = []
    stop = time.perf_counter() + 15
    clients = [threading.Thread(target=_dribble, args=(host, int(port), closed, stop)) for _ in range(8)]
    for c in clients:
        c.start()
    time.sleep(0.5)  # every slow client connected and sending
    for _ in range(3):
        t = time.perf_counter()
        code, body = _req(url, "/healthz", token=None)
        assert code == 200 and time.perf_counter() - t < 1.0, "health waited behind slow clients"
    assert _ok(url)
    for c in clients:
        c.join()
    assert len(closed) == len(clients), "a slow client was never cut"
    assert max(closed) < 2 + 1.5, closed  # the deadline counts from the connection's start, not per line


def test_metrics_are_prometheus_text_and_count_only_successes_in_latency(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from scbp_edge.serving.server import Stats

    s = Stats()
    s.add(0.010, 200)
    s.add(5.0, 400)  # a refused request must not move the latency quantiles
    fams = {f.name: f for f in text_string_to_metric_families(s.prometheus({"runtime": "onnxruntime"}))}
    q = {x.labels.get("quantile"): x.value for x in fams["scbp_predict_latency_seconds"].samples}
    assert q["0.99"] == pytest.approx(0.010)
    codes = {x.labels["code"]: x.value for x in fams["scbp_predict_requests"].samples}
    assert codes == {"200": 1.0, "400": 1.0}


def test_bare_list_body_says_what_to_send(served):
    url, _ = served
    code, body = _req(url, "/predict", b"[1, 2, 3]")
    assert code == 400 and b'{\\"tensor\\": [...]}' in body


def test_hung_up_clients_leave_no_traceback(served):  # last: it stops the server
    url, proc = served
    body = json.dumps({"tensor": np.zeros((1, 3, 32, 32)).tolist()}).encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for _ in range(30):
        _raw(url, head + body, read=False)  # send and hang up before the answer
    assert _ok(url)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err[-2000:]


def test_a_number_beyond_float32_is_refused_without_a_numpy_warning(tmp_path):
    """Issue 57: 1e308 got its right 400, with numpy's overflow RuntimeWarning on the server's stderr."""
    import warnings

    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx
    from scbp_edge.runtimes import runtime_class
    from scbp_edge.serving.model import InputError, Model

    export_onnx(Workbench(SeedOptions("cifar-resnet20")).seed.model, (3, 32, 32), tmp_path / "m.onnx")
    model = Model(str(tmp_path / "m.onnx"), runtime_class("onnxruntime")().session_class(), threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="outside the float32 range"):
            model.predict(np.full((1, 3, 32, 32), 1e308))
