#!/usr/bin/env python3
"""Self-contained ONNX Runtime timing worker: Python 3.6+, numpy and onnxruntime only.

It is copied as-is to remote CPU devices, so it imports nothing from scbp_edge.
Protocol (JSON lines): the first stdin line configures it; it answers
{"ready": ...}; then each {"cmd": "round", "min_runs": N, "min_seconds": S}
is answered with that round's latencies; {"cmd": "stop"} is answered with
peak memory and the process exits.  Any failure is answered {"error": "..."}.
"""
import glob
import json
import os
import sys
import time


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _rss_bytes():
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


def _peak_bytes():
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


class Rapl:
    """Package energy from powercap sysfs, summed over packages, with wrap-around handled."""

    def __init__(self, root="/sys/class/powercap"):
        self.domains = []
        self.reason = None
        paths = sorted(glob.glob(os.path.join(root, "intel-rapl:[0-9]")))
        if not paths:
            self.reason = "no RAPL domain under %s (not an x86 host, or a VM without powercap)" % root
            return
        for p in paths:
            try:
                with open(os.path.join(p, "energy_uj")) as f:
                    int(f.read())
                with open(os.path.join(p, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
                self.domains.append((os.path.join(p, "energy_uj"), wrap))
            except (OSError, ValueError) as exc:
                self.reason = "RAPL counter %s unreadable (%s); run as root or grant read access" % (p, exc)
                self.domains = []
                return

    def read(self):
        if not self.domains:
            return None
        vals = []
        for path, _ in self.domains:
            with open(path) as f:
                vals.append(int(f.read()))
        return vals

    def delta_uj(self, before, after):
        if before is None or after is None:
            return None
        total = 0
        for (_, wrap), b, a in zip(self.domains, before, after):
            total += a - b if a >= b else a + wrap - b
        return total


def _cores():
    """The cores this process may run on (all of the device's, unless an affinity says otherwise)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _die_with_parent():
    """Linux: exit when the process that started this worker dies (a SIGKILLed build leaves no worker)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    import numpy as np
    import onnxruntime as ort

    _die_with_parent()
    cfg = json.loads(sys.stdin.readline())
    if cfg.get("affinity") and hasattr(os, "sched_setaffinity"):  # Linux: keep the worker on these cores
        os.sched_setaffinity(0, [int(c) for c in cfg["affinity"]])
    threads = int(cfg.get("threads", 0)) or len(_cores())
    baseline = _rss_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if "spin" in cfg:  # idle intra-op threads spin-wait for work by default: they then eat other workers' CPU
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg["spin"] else "0")
    if cfg.get("spin_us") is not None:  # bounded spinning (ONNX Runtime 1.26+; older ones ignore the key)
        opts.add_session_config_entry("session.intra_op.spin_duration_us", str(int(cfg["spin_us"])))
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(cfg["model"], opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else int(cfg.get("batch", 1)) for d in inp.shape]
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    feed = {inp.name: x}
    for _ in range(int(cfg.get("warmup", 10))):
        sess.run(None, feed)
    warm_s = float(cfg.get("warmup_s", 0))  # spent before the first round, alone on the machine (see below)
    rapl = Rapl(cfg.get("rapl_root") or os.environ.get("SCBP_RAPL_ROOT") or "/sys/class/powercap")
    idle_w = None
    if rapl.domains:  # idle power just before timing, for energy above idle
        e0, t0 = rapl.read(), time.perf_counter()
        time.sleep(float(cfg.get("idle_seconds", 0.5)))
        idle_w = rapl.delta_uj(e0, rapl.read()) / 1e6 / (time.perf_counter() - t0)
    _reply({"ready": True, "baseline_rss": baseline, "load_s": load_s, "input_shape": shape,
            "energy_reason": rapl.reason, "idle_w": idle_w, "pid": os.getpid(), "threads": threads,
            "energy_source": "rapl (package domains, whole timed window)" if rapl.domains else None,
            "info": {"runtime": "onnxruntime " + ort.__version__}})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("cmd") == "stop":
            _reply({"peak_rss": _peak_bytes(), "baseline_rss": baseline})
            return
        if warm_s > 0:
            # Time-based warm-up happens here, when this worker has the machine to itself, not at load time:
            # all workers of a chunk warming at once left their thread pools in a state that halved or doubled
            # later latencies (benchmarks/results/measure_protocol.md).
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < warm_s:
                sess.run(None, feed)
            warm_s = 0
        lat = []
        e0 = rapl.read()
        cpu0, start = time.process_time(), time.perf_counter()
        while len(lat) < int(cmd["min_runs"]) or time.perf_counter() - start < float(cmd["min_seconds"]):
            t = time.perf_counter()
            sess.run(None, feed)
            lat.append((time.perf_counter() - t) * 1000.0)
        wall = time.perf_counter() - start
        # CPU time of this process over the same window: with one inference thread, wall minus CPU is the
        # time the thread waited for a core, i.e. how busy the machine was (benchmarks/results/noisy_rounds.md)
        _reply({"latencies_ms": lat, "wall_s": wall, "cpu_s": time.process_time() - cpu0,
                "energy_uj": rapl.delta_uj(e0, rapl.read())})


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report, never hang the coordinator
        _reply({"error": "%s: %s" % (type(exc).__name__, str(exc)[:300])})
        sys.exit(1)
