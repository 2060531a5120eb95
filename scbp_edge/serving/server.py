"""HTTP server: POST /predict, GET /healthz, GET /metrics (Prometheus text).  stdlib + numpy, Python 3.6+.

``python -m runtime.server MODEL --port 8080`` inside an image (the session is
``runtime/session.py``), or ``scbp-edge serve MODEL`` from an installed scbp-edge.

``POST /predict`` takes an encoded image (``Content-Type: image/png``, ``image/jpeg``,
...), a ``.npy`` tensor (``application/x-npy``) or JSON ``{"tensor": [[[[...]]]]}``
(``application/json``): a float tensor (N, C, H, W) or (C, H, W), already normalised.
It answers ``{"predictions": [{"top1", "index", "scores"}]}``.

Hostile clients: every request must state a ``Content-Length`` within the
limit before anything is read; the whole request (line, headers, body) must
arrive within ``--request-timeout`` seconds of the connection's start, however
slowly its bytes come; one event loop reads every request, and only inference
takes one of ``--workers`` threads, so slow clients never hold a worker and
``/healthz`` answers while they wait; decoded images are bounded in pixels;
non-finite numbers and deeply nested JSON get 400.  With ``--token-file`` (or
``SCBP_TOKEN``), every endpoint but ``/healthz`` needs ``Authorization: Bearer``.
"""

import argparse
import asyncio
import contextlib
import hmac
import io
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .model import InputError, Model

MAX_BODY = 8 * 1024 * 1024  # bytes; larger bodies get 413 without being read
REQUEST_TIMEOUT = 10.0  # seconds for a whole request (line, headers and body) to arrive, from the connection's start
WORKERS = 8  # inferences at once
BACKLOG = 128
MAX_CONNECTIONS = 256  # connections open at once; more get 503
MAX_LINE = 8192  # bytes of a request line or a header line
MAX_HEAD = 65536  # bytes of all header lines together
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
           413: "Payload Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}
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


class _Refused(Exception):
    """A request answered with ``code`` and a one-line reason, without reading (more of) its body."""

    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code


class App(object):
    """Routes, authentication and input limits of one served model; :class:`Server` is the transport."""

    def __init__(self, model, stats, max_body=MAX_BODY, token=None, info=None):
        self.model, self.stats, self.max_body = model, stats, max_body
        self.expected = token.encode() if token else None
        self.info = info or {}

    def authorised(self, headers):
        if self.expected is None:
            return True
        scheme, _, cred = headers.get("authorization", "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 7235); the credential is compared in constant time
        return scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode("latin-1", "replace"),
                                                                  self.expected)

    def route(self, method, path, headers):
        """The answer to a request that needs no body, or None for a /predict whose body is to be read."""
        if method not in ("GET", "POST"):
            raise _Refused(501, "method %s not supported; use GET or POST" % method[:20])
        if method == "GET" and path == "/healthz":
            return 200, {"status": "ok", "input_shape": list(self.model.chw)}
        if not self.authorised(headers):
            raise _Refused(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        if method == "GET" and path == "/metrics":
            return 200, self.stats.prometheus(self.info).encode(), "text/plain; version=0.0.4; charset=utf-8"
        if method == "GET":
            raise _Refused(404, "no route %s; use POST /predict, GET /healthz, GET /metrics" % path[:200])
        if path != "/predict":
            raise _Refused(404, "no route %s; use POST /predict" % path[:200])
        return None

    def body_length(self, headers):
        """The body's declared length and type, checked before anything of it is read."""
        raw = headers.get("content-length")
        if raw is None:
            raise _Refused(411, "Content-Length header required")
        if not raw.strip().isdigit():
            raise _Refused(400, "Content-Length must be a non-negative integer, got %r" % raw[:40])
        length = int(raw)
        if length > self.max_body:
            raise _Refused(413, "body of %d bytes exceeds the %d-byte limit" % (length, self.max_body))
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES + TENSOR_TYPES + ("application/octet-stream",):
            raise _Refused(415, "content type '%s' not accepted; send an image (%s) or a tensor (%s)"
                           % (ctype[:60], ", ".join(IMAGE_TYPES), ", ".join(TENSOR_TYPES)))
        return length, ctype

    def predict(self, ctype, data):
        """(code, answer) for one body; runs on a worker thread."""
        t = time.perf_counter()
        try:
            if ctype == "application/x-npy":
                try:
                    x = np.load(io.BytesIO(data), allow_pickle=False)
                except Exception as exc:  # noqa: BLE001 - any malformed .npy
                    raise InputError("body is not a .npy array (%s)" % str(exc)[:120]) from None
            elif ctype == "application/json":
                x = _json_tensor(data)
            else:
                x = self.model.preprocess_image(data)
            code, obj = 200, {"predictions": self.model.scores(self.model.predict(x))}
        except InputError as exc:
            code, obj = exc.status, {"error": str(exc)[:300]}
        self.stats.add(time.perf_counter() - t, code)
        return code, obj


class Server(object):
    """One event loop reads every request under its deadline; only inference takes one of ``workers`` threads.

    A client that sends its request a byte at a time holds nothing but its own connection, and only until
    ``timeout`` seconds after it connected (line, headers and body together); /healthz and /metrics are
    answered on the loop itself, so slow clients never queue them.  Connections beyond ``max_connections``
    get 503 at once; bodies being received are bounded by twice ``workers`` (memory).
    """

    def __init__(self, app, workers=WORKERS, timeout=REQUEST_TIMEOUT, max_connections=MAX_CONNECTIONS):
        self.app, self.timeout, self.max_connections = app, timeout, max_connections
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.bodies = asyncio.Semaphore(2 * workers)
        self.open = 0

    async def handle(self, reader, writer):
        loop = asyncio.get_event_loop()
        deadline = loop.time() + self.timeout
        self.open += 1
        try:
            if self.open > self.max_connections:
                raise _Refused(503, "too many connections; retry shortly")
            method, path, headers = await asyncio.wait_for(_read_head(reader), self.timeout)
            reply = self.app.route(method, path, headers)
            if reply is None:
                length, ctype = self.app.body_length(headers)
                await self.bodies.acquire()
                try:
                    data = await asyncio.wait_for(reader.readexactly(length), max(0.0, deadline - loop.time()))
                finally:
                    self.bodies.release()
                reply = await loop.run_in_executor(self.pool, self.app.predict, ctype, data)
            await _answer(writer, *reply)
        except _Refused as exc:
            await _answer(writer, exc.code, {"error": str(exc)})
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client stalled or hung up, or the server is stopping: nothing to answer, nothing to report
        except Exception as exc:  # noqa: BLE001 - one client's trouble never reaches the others
            sys.stderr.write("error serving a request: %s: %s\n" % (type(exc).__name__, str(exc)[:200]))
        finally:
            self.open -= 1
            writer.close()


async def _read_head(reader):
    """(method, path, headers with lower-case names) of one request; _Refused for a malformed or oversized one."""
    try:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed before a request")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _Refused(400, "malformed request line")
        headers, size = {}, 0
        while True:
            h = await reader.readline()
            size += len(h)
            if size > MAX_HEAD:
                raise _Refused(431, "request headers exceed %d bytes" % MAX_HEAD)
            if h in (b"\r\n", b"\n", b""):
                return parts[0], parts[1], headers
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep or not name.strip():
                raise _Refused(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
    except ValueError:  # asyncio's line limit
        raise _Refused(431, "a request line or header exceeds %d bytes" % MAX_LINE) from None


async def _answer(writer, code, body, ctype="application/json"):
    if not isinstance(body, bytes):
        try:
            body = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            code, body = 500, b'{"error": "the model produced non-finite scores"}'
    head = ["HTTP/1.0 %d %s" % (code, REASONS.get(code, "Error")), "Server: scbp-edge-runtime/3",
            "Content-Type: " + ctype, "Content-Length: %d" % len(body), "Connection: close"]
    if code == 401:
        head.append("WWW-Authenticate: Bearer")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)  # a client that never reads cannot hold the answer


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
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # before the server's semaphore: Python 3.6 binds it to the current loop
    srv = Server(App(model, Stats(), max_body, token, info), workers, timeout)
    listener = loop.run_until_complete(asyncio.start_server(srv.handle, host, port, limit=MAX_LINE,
                                                            backlog=BACKLOG, reuse_address=True))
    url = "http://%s:%d" % (host, listener.sockets[0].getsockname()[1])
    print("serving %s on %s%s" % (model_path, url, " (bearer token required)" if token else ""), flush=True)
    if ready is not None:
        ready(url)
    for sig in (signal.SIGTERM, signal.SIGINT):
        # the loop stops between callbacks: a KeyboardInterrupt raised inside one printed a traceback;
        # not the main thread, or no signals here: they keep their handlers
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        _finish(loop)
        srv.pool.shutdown(wait=False)
        loop.close()


def _finish(loop):
    """Cancel the connections still open and let each close its socket while the loop can still run."""
    all_tasks = getattr(asyncio, "all_tasks", None) or asyncio.Task.all_tasks  # Python 3.6 has only the latter
    pending = [t for t in all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


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
