"""HTTP server: POST /predict, GET /healthz, GET /metrics.  stdlib + numpy + onnxruntime.

``python -m runtime.server MODEL.onnx --port 8080`` inside the image, or
``scbp-edge serve MODEL.onnx --port 8080`` from an installed scbp-edge.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from .model import InputError, Model

MAX_BODY = 8 * 1024 * 1024  # bytes; larger bodies get 413 without being read
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "image/x-portable-anymap")
TENSOR_TYPES = ("application/x-npy", "application/json")


class Stats:
    """Request count and a bounded window of latencies for /metrics."""

    def __init__(self, window: int = 10000) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.errors = 0
        self.lat: list[float] = []
        self.window = window

    def add(self, ms: float, ok: bool) -> None:
        with self.lock:
            self.count += 1
            self.errors += not ok
            self.lat.append(ms)
            del self.lat[: -self.window]

    def snapshot(self) -> dict:
        with self.lock:
            a = np.array(self.lat) if self.lat else np.zeros(1)
            return {"requests": self.count, "errors": self.errors,
                    "latency_ms": {q: float(np.percentile(a, int(q[1:]))) for q in ("p50", "p90", "p99")}}


def make_handler(model: Model, stats: Stats, max_body: int = MAX_BODY):
    class Handler(BaseHTTPRequestHandler):
        server_version = "scbp-edge-runtime/1"

        def log_message(self, *_args) -> None:  # quiet: metrics cover it
            pass

        def _send(self, code: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/healthz":
                self._send(200, {"status": "ok", "input_shape": list(model.chw)})
            elif self.path == "/metrics":
                self._send(200, stats.snapshot())
            else:
                self._send(404, {"error": f"no route {self.path}; use POST /predict, GET /healthz, GET /metrics"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                self._send(404, {"error": f"no route {self.path}; use POST /predict"})
                return
            t = time.perf_counter()
            code, obj = self._predict()
            stats.add((time.perf_counter() - t) * 1000, code == 200)
            self._send(code, obj)

        def _predict(self) -> tuple[int, dict]:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return 411, {"error": "Content-Length header required"}
            if length > max_body:
                self.close_connection = True  # do not read an oversized body
                return 413, {"error": f"body of {length} bytes exceeds the {max_body}-byte limit"}
            data = self.rfile.read(length)
            try:
                if ctype in IMAGE_TYPES or ctype == "application/octet-stream":
                    x = model.preprocess_image(data)
                elif ctype == "application/x-npy":
                    x = np.load(io.BytesIO(data), allow_pickle=False)
                elif ctype == "application/json":
                    x = np.asarray(json.loads(data)["tensor"], dtype=np.float32)
                else:
                    return 415, {"error": f"content type '{ctype}' not accepted; send an image "
                                          f"({', '.join(IMAGE_TYPES)}) or a tensor ({', '.join(TENSOR_TYPES)})"}
                return 200, {"predictions": model.scores(model.predict(x))}
            except (InputError, ValueError, KeyError, TypeError) as exc:
                return 400, {"error": str(exc)[:300] or type(exc).__name__}

    return Handler


def load_model(model_path: str, backend: str = "onnxruntime", threads: int = 0):
    """The runtime model for ``backend`` (TensorRT imported only when asked for)."""
    if backend == "tensorrt":
        from .trt import TensorRTModel

        return TensorRTModel(model_path)
    return Model(model_path, threads=threads)


def serve(model_path: str, host: str = "0.0.0.0", port: int = 8080, threads: int = 0,
          backend: str = "onnxruntime") -> None:
    """Serve ``model_path`` until interrupted."""
    model = load_model(model_path, backend, threads)
    httpd = ThreadingHTTPServer((host, port), make_handler(model, Stats()))
    print(f"serving {model_path} on http://{host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description="scbp-edge inference server")
    ap.add_argument("model")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
    a = ap.parse_args()
    serve(a.model, a.host, a.port, a.threads, a.backend)


if __name__ == "__main__":
    main()
