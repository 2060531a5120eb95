"""HTTP server: POST /predict, GET /healthz, GET /metrics (Prometheus text).  stdlib + numpy, Python 3.6+.

``python -m runtime.server MODEL --port 8080`` inside an image (the session is
``runtime/session.py``), or ``scbp-edge serve MODEL`` from an installed scbp-edge.

``POST /predict`` takes an encoded image (``Content-Type: image/png``, ``image/jpeg``,
...), a ``.npy`` tensor (``application/x-npy``) or JSON ``{"tensor": [[[[...]]]]}``
(``application/json``): a float tensor (N, C, H, W) or (C, H, W), already normalised.
It answers ``{"predictions": [{"top1", "index", "scores"}]}``.

Hostile clients: every request must state a ``Content-Length`` within the
limit before anything is read; the whole request must arrive within
``--request-timeout`` seconds; at most ``--workers`` requests are served at
once (more wait in the listen backlog); decoded images are bounded in pixels;
non-finite numbers and deeply nested JSON get 400.  With ``--token-file`` (or
``SCBP_TOKEN``), every endpoint but ``/healthz`` needs ``Authorization: Bearer``.
"""

import argparse
import hmac
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np

from .model import InputError, Model

MAX_BODY = 8 * 1024 * 1024  # bytes; larger bodies get 413 without being read
REQUEST_TIMEOUT = 10.0  # seconds for a whole request (headers and body) to arrive
WORKERS = 8
BACKLOG = 128
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "image/x-portable-anymap")
TENSOR_TYPES = ("application/x-npy", "application/json")


class Stats(object):
    """Answer counts per status code and a bounded window of successful /predict latencies."""

    def __init__(self, window=10000):
        self.lock = threading.Lock()
        self.codes = {}
        self.ok_lat = []
        self.ok_sum = 0.0
        self.ok_count = 0
        self.window = window

    def add(self, seconds, code):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if code == 200:  # a refused request says nothing about the model's speed
                self.ok_lat.append(seconds)
                del self.ok_lat[:-self.window]
                self.ok_sum += seconds
                self.ok_count += 1

    def prometheus(self, info):
        """The Prometheus text exposition format (version 0.0.4)."""
        with self.lock:
            codes, lat = dict(self.codes), list(self.ok_lat)
            total, count = self.ok_sum, self.ok_count
        labels = ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"'))
                          for k, v in sorted(info.items()))
        out = ["# HELP scbp_model_info The served model.", "# TYPE scbp_model_info gauge",
               "scbp_model_info{%s} 1" % labels,
               "# HELP scbp_predict_requests_total /predict answers by HTTP status code.",
               "# TYPE scbp_predict_requests_total counter"]
        out += ['scbp_predict_requests_total{code="%d"} %d' % (c, n) for c, n in sorted(codes.items())]
        out += ["# HELP scbp_predict_latency_seconds Latency of successful /predict requests (recent window).",
                "# TYPE scbp_predict_latency_seconds summary"]
        for q in (0.5, 0.9, 0.99):
            val = float(np.percentile(lat, 100 * q)) if lat else float("nan")
            out.append('scbp_predict_latency_seconds{quantile="%g"} %r' % (q, val))
        out += ["scbp_predict_latency_seconds_sum %r" % total, "scbp_predict_latency_seconds_count %d" % count]
        return "\n".join(out) + "\n"


class _DeadlineReader(object):
    """The request stream, failing with socket.timeout once the request's deadline has passed."""

    def __init__(self, raw, sock, deadline):
        self.raw, self.sock, self.deadline = raw, sock, deadline

    def _arm(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("request not received in time")
        self.sock.settimeout(left)

    def readline(self, limit=-1):
        self._arm()
        return self.raw.readline(limit)

    def read(self, n=-1):
        self._arm()
        return self.raw.read(n)

    def close(self):
        self.raw.close()


def _no_constants(name):
    raise ValueError("JSON holds %s, which is not a finite number" % name)


def _json_tensor(data):
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except RecursionError:
        raise InputError("JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError("body is not valid JSON (%s)" % str(exc)[:120]) from None
    if not isinstance(obj, dict) or "tensor" not in obj:
        raise InputError('JSON body must be an object {"tensor": [...]} holding a (N, C, H, W) or (C, H, W) array')
    try:
        return np.asarray(obj["tensor"])
    except (ValueError, RecursionError):
        raise InputError("'tensor' is not a rectangular array of numbers") from None


def make_handler(model, stats, max_body=MAX_BODY, token=None, timeout=REQUEST_TIMEOUT, info=None):
    """The request handler class bound to ``model``."""
    expected = token.encode() if token else None
    info = info or {}

    class Handler(BaseHTTPRequestHandler):
        server_version = "scbp-edge-runtime/2"
        protocol_version = "HTTP/1.0"  # one request per connection: nothing idles on a worker

        def setup(self):
            BaseHTTPRequestHandler.setup(self)
            self.rfile = _DeadlineReader(self.rfile, self.connection, time.monotonic() + timeout)

        def log_message(self, *_args):  # quiet: /metrics covers it
            pass

        def _send(self, code, body, ctype="application/json"):
            if not isinstance(body, bytes):
                try:
                    body = json.dumps(body, allow_nan=False).encode()
                except ValueError:
                    code, body = 500, b'{"error": "the model produced non-finite scores"}'
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if code == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self):
            if expected is None:
                return True
            scheme, _, cred = (self.headers.get("Authorization") or "").strip().partition(" ")
            # The scheme is case-insensitive (RFC 7235); the credential is compared in constant time
            if scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode("latin-1", "replace"), expected):
                return True
            self._send(401, {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"})
            return False

        def do_GET(self):  # noqa: N802 - http.server naming
            if self.path == "/healthz":
                self._send(200, {"status": "ok", "input_shape": list(model.chw)})
            elif not self._authorised():
                return
            elif self.path == "/metrics":
                self._send(200, stats.prometheus(info).encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._send(404, {"error": "no route %s; use POST /predict, GET /healthz, GET /metrics" % self.path})

        def do_POST(self):  # noqa: N802
            if not self._authorised():
                return
            if self.path != "/predict":
                self._send(404, {"error": "no route %s; use POST /predict" % self.path})
                return
            t = time.perf_counter()
            code, obj = self._predict()
            stats.add(time.perf_counter() - t, code)
            self._send(code, obj)

        def _length(self):
            raw = self.headers.get("Content-Length")
            if raw is None:
                return 411, "Content-Length header required"
            if not raw.strip().isdigit():
                return 400, "Content-Length must be a non-negative integer, got %r" % raw[:40]
            length = int(raw)
            if length > max_body:
                return 413, "body of %d bytes exceeds the %d-byte limit" % (length, max_body)
            return None, length

        def _predict(self):
            code, length = self._length()
            if code is not None:
                self.close_connection = True  # nothing of the body is read
                return code, {"error": length}
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype not in IMAGE_TYPES + TENSOR_TYPES + ("application/octet-stream",):
                self.close_connection = True
                return 415, {"error": "content type '%s' not accepted; send an image (%s) or a tensor (%s)"
                             % (ctype, ", ".join(IMAGE_TYPES), ", ".join(TENSOR_TYPES))}
            data = self.rfile.read(length)
            if len(data) != length:
                return 400, {"error": "body ended after %d of %d bytes" % (len(data), length)}
            try:
                if ctype == "application/x-npy":
                    try:
                        x = np.load(io.BytesIO(data), allow_pickle=False)
                    except Exception as exc:  # noqa: BLE001 - any malformed .npy
                        raise InputError("body is not a .npy array (%s)" % str(exc)[:120]) from None
                elif ctype == "application/json":
                    x = _json_tensor(data)
                else:
                    x = model.preprocess_image(data)
                return 200, {"predictions": model.scores(model.predict(x))}
            except InputError as exc:
                return exc.status, {"error": str(exc)[:300]}

    return Handler


class BoundedServer(HTTPServer):
    """At most ``workers`` requests in flight; further connections wait in the listen backlog."""

    request_queue_size = BACKLOG
    allow_reuse_address = True

    def __init__(self, address, handler, workers=WORKERS):
        HTTPServer.__init__(self, address, handler)
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers)

    def process_request(self, request, client_address):
        self._slots.acquire()  # back-pressure: stop accepting while every worker is busy
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # pool shut down
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one client's trouble never reaches the others
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return  # the client hung up or stalled: nothing to report
        sys.stderr.write("error serving %s: %s: %s\n" % (client_address[0], type(exc).__name__, str(exc)[:200]))

    def server_close(self):
        HTTPServer.server_close(self)
        self._pool.shutdown(wait=False)


def read_token(token_file=None):
    """The bearer token from ``token_file``, else $SCBP_TOKEN, else None (an open server)."""
    if token_file:
        with open(token_file) as f:
            token = f.read().strip()
        if not token:
            raise SystemExit("error: token file %s is empty" % token_file)
        return token
    return os.environ.get("SCBP_TOKEN") or None


def measured_threads(model_path):
    """The thread count the model was measured with (manifest.json beside it), else 0 (all cores)."""
    manifest = os.path.join(os.path.dirname(os.path.abspath(model_path)), "manifest.json")
    try:
        with open(manifest) as f:
            return int(json.load(f).get("target", {}).get("threads") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def serve(model_path, session_cls, host="127.0.0.1", port=8080, threads=None, token=None, workers=WORKERS,
          max_body=MAX_BODY, timeout=REQUEST_TIMEOUT, ready=None):
    """Serve ``model_path`` with ``session_cls`` until interrupted; ``ready(url)`` is called once listening.

    ``threads`` None: as many as the model was measured with (its latency is only promised for that).
    """
    threads = measured_threads(model_path) if threads is None else threads
    model = Model(model_path, session_cls, threads=threads)
    info = {"runtime": getattr(session_cls, "name", "unknown"), "candidate": model.meta.get("candidate", "unknown"),
            "precision": model.meta.get("precision", "unknown")}
    handler = make_handler(model, Stats(), max_body, token, timeout, info)
    httpd = BoundedServer((host, port), handler, workers)
    url = "http://%s:%d" % (host, httpd.server_address[1])
    print("serving %s on %s%s" % (model_path, url, " (bearer token required)" if token else ""), flush=True)
    if ready is not None:
        ready(url)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def _stop(_signum, _frame):
    raise KeyboardInterrupt  # serve() closes the socket and returns


def main():
    ap = argparse.ArgumentParser(description="scbp-edge inference server")
    ap.add_argument("model")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--threads", type=int, default=None,
                    help="inference threads (default: what the model was measured with, from manifest.json; "
                         "0: all cores)")
    ap.add_argument("--workers", type=int, default=WORKERS, help="requests served at once")
    ap.add_argument("--token-file", help="file holding the bearer token (else $SCBP_TOKEN; none: open)")
    a = ap.parse_args()
    # `docker stop` sends SIGTERM, which PID 1 in a container would otherwise ignore for 10 s until SIGKILL
    signal.signal(signal.SIGTERM, _stop)
    from .session import Session  # the runtime's serving session, copied in by scbp-edge package

    serve(a.model, Session, a.host, a.port, a.threads, read_token(a.token_file), max(1, a.workers))


if __name__ == "__main__":
    main()
