#!/usr/bin/env python3
"""Self-contained trtexec timing worker: Python 3.6+ standard library only (stock JetPack has it).

Copied as-is to a Jetson (or any machine with TensorRT's ``trtexec``) together
with ``trt_engine.py`` (the shared engine recipe and cache key); it imports
nothing from scbp_edge.  It builds the engine with the device's own trtexec
(engines are specific to the device and TensorRT version) from the shared
recipe, caches it under the shared key, and times it round by round while
sampling power with ``tegrastats``.

It sends raw device output (trtexec logs, tegrastats lines, ``nvpmodel -q``,
GPU devfreq clocks) and the per-iteration latencies from ``--exportTimes``;
the coordinator parses them with ``scbp_edge.runtimes.trtexec.parsers``, which
are tested on real device logs.  Protocol: as ``onnxruntime/worker.py`` (JSON lines).
"""
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, os.pardir, "common")]  # on the device: beside; in a checkout: common/
import trt_engine  # noqa: E402 - found only after the line above

MAX_TEXT = 64 * 1024  # bound every log sent back
DEFAULT_DIRS = ["/usr/src/tensorrt/bin", "/usr/bin", "/usr/sbin", "/usr/local/bin"]
GPU_DEVFREQ = ("gpu", "gm20b", "gp10b", "gv11b", "ga10b", "gb10b")


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _tail(text):
    return text[-MAX_TEXT:]


def _errors(log):
    """trtexec's own error lines (the banner repeats the whole command line, which says nothing)."""
    lines = [ln.strip() for ln in log.splitlines() if "[E]" in ln or "ERROR" in ln]
    return "; ".join(lines[-3:])[:300] or log.strip()[-300:]


def find_tool(name, cfg):
    """``name`` in the configured bin dir, then the usual JetPack places, then PATH."""
    dirs = ([cfg["bin_dir"]] if cfg.get("bin_dir") else []) + DEFAULT_DIRS
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _run(argv, timeout):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def trt_version(trtexec):
    """(major, minor, patch) from trtexec's banner, else from NvInferVersion.h."""
    _, out = _run([trtexec, "--help"], 60)
    m = re.search(r"TensorRT\.trtexec \[TensorRT v(\d+)\]", out)
    if m:
        d = m.group(1)
        if len(d) >= 6:
            return int(d[:-4]), int(d[-4:-2]), int(d[-2:])
        return int(d[0]), int(d[1]), int(d[2:])
    for header in glob.glob("/usr/include/*/NvInferVersion.h") + glob.glob("/usr/include/NvInferVersion.h"):
        with open(header) as f:
            text = f.read()
        parts = [re.search(r"#define NV_TENSORRT_%s (\d+)" % k, text) for k in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return tuple(int(p.group(1)) for p in parts)
    raise RuntimeError("cannot tell the TensorRT version of %s (no banner, no NvInferVersion.h)" % trtexec)


def gpu_clocks():
    """min/max/cur of the GPU's devfreq node: pinned (jetson_clocks) when min == max."""
    for node in sorted(glob.glob("/sys/class/devfreq/*")):
        if any(k in os.path.basename(node) for k in GPU_DEVFREQ):
            vals = {}
            for k in ("min_freq", "max_freq", "cur_freq"):
                try:
                    with open(os.path.join(node, k)) as f:
                        vals[k] = int(f.read().strip())
                except (OSError, ValueError):
                    vals[k] = None
            vals["node"] = node
            return vals
    return None


class Power(object):
    """tegrastats sampling around an idle pause plus a timed run; raw text goes back to the coordinator."""

    def __init__(self, cfg):
        self.tool = find_tool("tegrastats", cfg)
        self.interval = int(cfg.get("power_interval_ms", 100))
        self.proc = None

    def start(self):
        if self.tool:
            self.proc = subprocess.Popen([self.tool, "--interval", str(self.interval)], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        return _tail(out.decode("utf-8", "replace"))


def engine_for(trtexec, rec, cfg, board_name):
    """Cached engine path (built now if missing), build seconds, build log, cache hit."""
    key = trt_engine.cache_key(trt_engine.file_sha256(cfg["model"]), board_name, rec)
    cache = os.path.expanduser(cfg.get("engine_cache") or "~/.cache/scbp-edge/engines")
    os.makedirs(cache, exist_ok=True)
    engine = os.path.join(cache, key + ".engine")
    # One build at a time on the device: a Nano has 4 GB shared by CPU and GPU.
    with open(os.path.join(cache, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(engine) and os.path.getsize(engine) > 0:
            return engine, 0.0, "", True
        part = engine + ".part%d" % os.getpid()  # never leave a half-written engine under the cache name
        t0 = time.time()
        argv = trt_engine.build_argv(trtexec, rec, cfg["model"], part, [tuple(d) for d in cfg.get("dynamic", [])])
        rc, log = _run(argv, float(cfg.get("build_timeout_s", 3600)))
        if rc != 0 or not os.path.isfile(part):
            if os.path.exists(part):
                os.remove(part)
            raise RuntimeError("trtexec engine build failed (exit %d): %s" % (rc, _errors(log)))
        os.rename(part, engine)
        return engine, time.time() - t0, _tail(log), False


def latencies(times_path, version, warmup_ms):
    with open(times_path) as f:
        return trt_engine.timed_latencies(json.load(f), version, warmup_ms)


def main():
    cfg = json.loads(sys.stdin.readline())
    trtexec = find_tool("trtexec", cfg)
    if not trtexec:
        raise RuntimeError("trtexec not found in %s or on PATH; install TensorRT (JetPack) or pass ?bin=DIR"
                           % ", ".join(([cfg["bin_dir"]] if cfg.get("bin_dir") else []) + DEFAULT_DIRS[:1]))
    version = trt_version(trtexec)
    board_name = trt_engine.device_name()
    rec = trt_engine.recipe(version, cfg.get("precision", "fp16"), int(cfg.get("workspace_mb", 0)),
                            int(cfg.get("max_batch", 1)))
    engine, build_s, build_log, cached = engine_for(trtexec, rec, cfg, board_name)
    power = Power(cfg)
    nvp = find_tool("nvpmodel", cfg)
    idle_s = float(cfg.get("idle_seconds", 1.0)) if power.tool else 0.0
    warmup_ms = int(cfg.get("warmup", 200))
    _reply({"ready": True, "load_s": build_s, "artifact_bytes": os.path.getsize(engine), "build_log": build_log,
            "power_interval_ms": power.interval, "power_tool": power.tool,
            "nvpmodel": _run([nvp, "-q"], 30)[1][-2000:] if nvp else None, "clocks": gpu_clocks(),
            "info": {"tensorrt": ".".join(map(str, version)), "trtexec": trtexec, "board": board_name,
                     "engine_cached": cached, "precision": rec["label"], "recipe": rec}})
    workdir = os.path.dirname(os.path.abspath(cfg["model"]))
    last_log = ""
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("cmd") == "stop":
            _reply({"log": last_log})
            return
        times = os.path.join(workdir, "times-%d.json" % os.getpid())
        power.start()
        try:  # tegrastats must not outlive a failed or timed-out run
            time.sleep(idle_s)  # idle power just before the run (engines of other workers are built by now)
            t0 = time.time()
            argv = trt_engine.time_argv(trtexec, version, engine, warmup_ms, cmd["min_runs"], cmd["min_seconds"], times)
            rc, log = _run(argv, float(cfg.get("round_timeout_s", 600)))
            wall = time.time() - t0
        finally:
            samples = power.stop()
        if rc != 0:
            hint = ""
            if "deserializ" in log.lower():  # e.g. TensorRT upgraded under the cache: rebuild on resume
                os.remove(engine)
                hint = " (the cached engine did not load and was removed; --resume rebuilds it)"
            raise RuntimeError("trtexec timing run failed (exit %d)%s: %s" % (rc, hint, _errors(log)))
        lat = latencies(times, version, warmup_ms)
        os.remove(times)
        last_log = _tail(log)
        _reply({"latencies_ms": lat, "log": last_log, "power": samples, "idle_s": idle_s, "wall_s": wall,
                "power_interval_ms": power.interval})


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report, never hang the coordinator
        _reply({"error": "%s: %s" % (type(exc).__name__, str(exc)[:400])})
        sys.exit(1)
