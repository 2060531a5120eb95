"""A third-party runtime for the plugin test: ONNX Runtime with graph optimisations off, one thread.

It lives outside scbp_edge and reaches it only through the public Runtime base
class and the ``scbp_edge.runtimes`` entry-point group (the test writes the
entry point), which is all a new runtime needs.  Its worker speaks the worker
protocol and, to prove that a chatty runtime cannot stall the measurement,
writes 1 MiB to stderr before it is ready.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scbp_edge.runtimes.base import Capabilities, Runtime

WORKER = '''
import json, os, sys, time
import numpy as np
import onnxruntime as ort
sys.stderr.write("x" * (1 << 20))
sys.stderr.flush()
cfg = json.loads(sys.stdin.readline())
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
sess = ort.InferenceSession(cfg["model"], opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
feed = {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)}
print(json.dumps({"ready": True, "threads": 1, "info": {"runtime": "ort-basic"}}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get("cmd") == "stop":
        print(json.dumps({}), flush=True)
        break
    lat, t0 = [], time.perf_counter()
    while len(lat) < cmd["min_runs"] or time.perf_counter() - t0 < cmd["min_seconds"]:
        s = time.perf_counter()
        sess.run(None, feed)
        lat.append((time.perf_counter() - s) * 1000)
    print(json.dumps({"latencies_ms": lat, "wall_s": time.perf_counter() - t0, "energy_uj": None}), flush=True)
'''


class OrtBasic(Runtime):
    """ONNX Runtime without graph optimisations."""

    name = "ort-basic"
    capabilities = Capabilities(precisions=("fp32",), energy=(), locations=("local",), batch_sizes=(1,))

    def unavailable_reason(self) -> str | None:
        return None

    def compile(self, source: Path, workdir: Path, *, precision: str = "fp32", workspace_mb: int = 0,
                max_batch: int = 1) -> Path:
        return source

    def load(self, artifact: Path, *, threads: int = 0) -> Any:
        raise NotImplementedError

    def run(self, handle: Any, x: Any) -> Any:
        raise NotImplementedError

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-c", WORKER]
