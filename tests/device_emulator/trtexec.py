"""Stand-in for a device's ``trtexec``, for tests of the trtexec backend over a real SSH connection.

It is not TensorRT: the "engine" is the ONNX file behind a header and the
timing runs it with ONNX Runtime on this machine, so latencies are real
measurements of real inference.  What it emulates from the real tool: the
flags each TensorRT version accepts (unknown ones fail as trtexec does), the
log format of the performance summary, the ``--exportTimes`` trace and the
memory report, as in the real Jetson/H100 logs of ../shared/fixtures/trtexec.
It reads the version to emulate from ``trt_version`` beside it and appends
every command line to ``calls.log`` there.  As the real 8.2/8.4 do, its
``--exportTimes`` trace includes the warm-up iterations (8.5+ leave them out).
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = {"--onnx", "--saveEngine", "--loadEngine", "--warmUp", "--iterations", "--duration",
          "--exportTimes", "--help", "--minShapes", "--optShapes", "--maxShapes", "--shapes"}
OLD = {"--fp16", "--int8", "--useSpinWait", "--noDataTransfers", "--useCudaGraph"}
BY_VERSION = {  # flags beyond COMMON, per emulated release (sampleOptions.cpp of each release branch)
    (8, 2): OLD | {"--workspace", "--buildOnly"},
    (8, 4): OLD | {"--workspace", "--memPoolSize", "--buildOnly"},
    (8, 6): OLD | {"--workspace", "--memPoolSize", "--buildOnly", "--skipInference"},
    (10, 16): OLD | {"--memPoolSize", "--skipInference", "--stronglyTyped"},
    # 11 removed the precision flags (strong typing) and flipped the timing defaults
    (11, 4): {"--memPoolSize", "--skipInference", "--stronglyTyped", "--includeDataTransfers", "--noCudaGraph",
              "--noSpinWait", "--useSpinWait", "--noDataTransfers", "--useCudaGraph"},
}
MAGIC = b"EMULATED-ENGINE\n"


def version():
    with open(os.path.join(HERE, "trt_version")) as f:
        return tuple(int(x) for x in f.read().strip().split("."))


def digits(v):
    major, minor, patch = v
    return f"{major}{minor:02d}{patch:02d}" if major >= 10 else f"{major}{minor}{patch:02d}"


def log(msg):
    print("[{}] [I] {}".format(time.strftime("%m/%d/%Y-%H:%M:%S"), msg))


def stats(name, xs):
    xs = sorted(xs)
    med = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
    log(f"{name}: min = {xs[0]:g} ms, max = {xs[-1]:g} ms, mean = {sum(xs) / len(xs):g} ms, "
        f"median = {med:g} ms, percentile(99%) = {p99:g} ms")


def main(argv):
    v = version()
    banner = "TensorRT.trtexec [TensorRT v{}] # trtexec {}".format(digits(v), " ".join(argv))
    print("&&&& RUNNING " + banner)
    with open(os.path.join(HERE, "calls.log"), "a") as f:
        f.write(" ".join(argv) + "\n")
    allowed = COMMON | BY_VERSION[v[:2]]
    opts = {}
    for a in argv:
        key, _, val = a.partition("=")
        if key not in allowed:
            print(f"[E] Unknown option: {key}")
            print("&&&& FAILED " + banner)
            return 1
        opts[key] = val
    if "--help" in opts:
        print("=== Model Options ===\n  --onnx=<file>   ONNX model")
        return 0
    if "--onnx" in opts:  # build
        with open(opts["--onnx"], "rb") as f:
            onnx = f.read()
        with open(opts["--saveEngine"], "wb") as f:
            f.write(MAGIC + onnx)
        log("Engine built in 0.1 sec.")
        print("&&&& PASSED " + banner)
        return 0
    import numpy as np
    import onnxruntime as ort

    with open(opts["--loadEngine"], "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        print("[E] Engine deserialization failed")
        print("&&&& FAILED " + banner)
        return 1
    sess = ort.InferenceSession(data[len(MAGIC):], providers=["CPUExecutionProvider"])
    gpu_mb = max(1, len(data) // (1024 * 1024) + 1)
    log(f"[TRT] [MemUsageChange] TensorRT-managed allocation in IExecutionContext creation: CPU +0, GPU +{gpu_mb}, "
        f"now: CPU 0, GPU {gpu_mb} (MiB)")
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.random.RandomState(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape])
            .astype(np.float32)}
    warm_ms = float(opts.get("--warmUp", 200))
    start = time.perf_counter()
    trace = []

    def one():
        s = time.perf_counter()
        sess.run(None, feed)
        e = time.perf_counter()
        trace.append({"startComputeMs": (s - start) * 1000.0, "endComputeMs": (e - start) * 1000.0,
                      "computeMs": (e - s) * 1000.0, "latencyMs": (e - s) * 1000.0})

    while (time.perf_counter() - start) * 1000.0 < warm_ms:
        one()
    warmups, t0 = len(trace), time.perf_counter()
    while (len(trace) - warmups < int(opts.get("--iterations", 10))
           or time.perf_counter() - t0 < float(opts.get("--duration", 3))):
        one()
    wall = time.perf_counter() - t0
    lat = [t["latencyMs"] for t in trace[warmups:]]
    log(f"Warmup completed {warmups} queries over {warm_ms:g} ms")
    log(f"Timing trace has {len(lat)} queries over {wall:g} s")
    if "--exportTimes" in opts:  # 8.2/8.4 export the warm-ups too; 8.5+ do not
        with open(opts["--exportTimes"], "w") as f:
            json.dump(trace if v < (8, 5) else trace[warmups:], f)
    log("=== Performance summary ===")
    log("Throughput: %g qps" % (len(lat) / wall))
    for name in ("Latency", "End-to-End Host Latency", "GPU Compute Time"):
        stats(name, lat)
    log(f"Total Host Walltime: {wall:g} s")
    log("Total GPU Compute Time: %g s" % (sum(lat) / 1000.0))
    print("&&&& PASSED " + banner)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
