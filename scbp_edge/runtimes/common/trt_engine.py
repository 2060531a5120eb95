"""One TensorRT engine recipe and one cache key for every path that builds or times engines.

The local ``tensorrt`` runtime (Python API), the ``trtexec`` device worker and
the served runtime in Jetson/GPU images all build an engine from the same
:func:`recipe` and cache it under the same :func:`cache_key`, so the served
engine is the measured one: same precision flags, same workspace.

Python 3.6+ and the standard library only: it is copied beside the device
worker and into images.  Facts per TensorRT release (from trtexec's
``sampleOptions.cpp``/``sampleReporting.cpp`` on the release/8.2 ... 11.x branches):

- 8.2: ``--workspace=MiB``, ``--buildOnly``; 8.4/8.5: ``--memPoolSize=workspace:MiB``;
  8.6+: ``--skipInference`` replaces ``--buildOnly``.
- 8.x-10.x: weak typing, ``--fp16``/``--int8`` let TensorRT choose kernels; an
  explicitly quantized (QDQ) ONNX needs ``--int8`` there.  11.x removed both
  flags: networks are strongly typed (QDQ is honoured, fp16 needs an fp16 ONNX).
- 8.2/8.4: ``--exportTimes`` includes the warm-up iterations; 8.5+ leave them
  out.  trtexec itself drops entries whose ``startComputeMs`` is below the warm-up.
- 11.x changed timing defaults (no data transfers, CUDA graphs and spin-wait
  on): ``--includeDataTransfers --noCudaGraph`` keep latencies comparable with
  8.x-10.x (transfers in, no graphs) and with the other runtimes.
"""

import hashlib
import json
import re
import shutil
import subprocess

RECIPE_VERSION = 1  # bump when the recipe changes what it builds: old cache entries then miss


def parse_version(text):
    """``"8.2.1.8"`` -> (8, 2, 1)."""
    parts = [int(p) for p in re.findall(r"\d+", str(text))[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def recipe(version, precision, workspace_mb, max_batch=1):
    """What to build: flags for TensorRT ``version`` and the precision the engine really has.

    ``precision``: "fp32", "fp16" (weakly typed fp16 kernels, or an fp16 ONNX on 11+),
    "int8" (an explicit QDQ ONNX; unquantized layers may use fp16 before 11).
    ``max_batch``: the largest batch a dynamic-batch ONNX is timed or served at.
    """
    version = tuple(version)
    flags, label = [], precision
    if precision == "fp16":
        if version < (11, 0):
            flags.append("fp16")
        else:
            label = "fp16 only from an fp16 ONNX (TensorRT 11+ is strongly typed)"
    elif precision == "int8":
        if version < (11, 0):
            flags += ["int8", "fp16"]
            label = "int8 (QDQ), fp16 elsewhere"
        else:
            label = "int8 (QDQ), the ONNX's own types elsewhere"
    elif precision != "fp32":
        raise ValueError("unknown precision %r; use fp32, fp16 or int8" % (precision,))
    return {"recipe": RECIPE_VERSION, "tensorrt": ".".join(map(str, version)), "precision": precision,
            "workspace_mb": int(workspace_mb), "flags": sorted(flags), "max_batch": int(max_batch), "label": label}


def device_name():
    """What an engine is specific to, beside TensorRT: the Jetson board, else the first GPU's name."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path) as f:
                return f.read().strip("\x00\n ")
        except OSError:
            pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=30).stdout.decode("utf-8", "replace").strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out.splitlines()[0].strip()
    return "unknown"


def cache_key(onnx_sha256, device, rec):
    """The engine's cache key: ONNX, TensorRT version, GPU/board, precision, workspace, flags."""
    ident = json.dumps([rec["recipe"], onnx_sha256, rec["tensorrt"], device, rec["precision"], rec["workspace_mb"],
                        rec["flags"], rec.get("max_batch", 1)], sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_argv(trtexec, rec, onnx, engine, dynamic_inputs=()):
    """trtexec's command line that builds ``rec`` into ``engine`` (flags of its release).

    ``dynamic_inputs``: (name, shape with -1 for the batch) of each dynamic input:
    one profile covering them all, batch 1 to ``max_batch``.
    """
    version = parse_version(rec["tensorrt"])
    argv = [trtexec, "--onnx=" + onnx, "--saveEngine=" + engine]
    if dynamic_inputs:
        for flag, batch in (("min", 1), ("opt", 1), ("max", rec.get("max_batch", 1))):
            spec = ",".join("%s:%s" % (name, "x".join(str(batch if d < 0 else d) for d in shape))
                            for name, shape in dynamic_inputs)
            argv.append("--%sShapes=%s" % (flag, spec))
    argv += ["--" + f for f in rec["flags"]]
    ws = rec["workspace_mb"]
    if ws:
        argv.append("--workspace=%d" % ws if version < (8, 4) else "--memPoolSize=workspace:%d" % ws)
    argv.append("--buildOnly" if version < (8, 6) else "--skipInference")
    return argv


def time_argv(trtexec, version, engine, warmup_ms, iterations, duration_s, times_path):
    """trtexec's command line that times ``engine``: transfers in, no CUDA graph, spin-wait, on every release."""
    argv = [trtexec, "--loadEngine=" + engine, "--warmUp=%d" % int(warmup_ms), "--iterations=%d" % int(iterations),
            "--duration=%d" % max(1, int(-(-float(duration_s) // 1))), "--exportTimes=" + times_path]
    if tuple(version) >= (11, 0):
        argv += ["--includeDataTransfers", "--noCudaGraph"]  # 11 flipped both defaults; spin-wait is on
    else:
        argv.append("--useSpinWait")
    return argv


def timed_latencies(trace, version, warmup_ms):
    """Per-iteration latencies (ms) of an ``--exportTimes`` trace, warm-up iterations left out.

    TensorRT < 8.5 writes the warm-up iterations too; they are the entries
    whose compute started before ``warmup_ms``, as trtexec's own report counts them.
    """
    rows = [e for e in trace if isinstance(e, dict) and "latencyMs" in e]
    if tuple(version) < (8, 5):
        rows = [e for e in rows if float(e.get("startComputeMs", warmup_ms)) >= float(warmup_ms)]
    return [float(e["latencyMs"]) for e in rows]


def configure_builder(trt, builder, network, config, rec):
    """Apply ``rec`` to a TensorRT builder config (the Python-API twin of :func:`build_argv`).

    One optimisation profile covers every dynamic input: batch 1 to ``max_batch``, tuned for 1.
    """
    for flag in rec["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag.upper()))
    ws = rec["workspace_mb"] * (1 << 20)
    if ws:
        if hasattr(config, "set_memory_pool_limit"):  # 8.4+
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
        else:
            config.max_workspace_size = ws
    profile = None
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if any(d < 0 for d in inp.shape):
            profile = profile or builder.create_optimization_profile()
            one = tuple(1 if d < 0 else d for d in inp.shape)
            most = tuple(rec.get("max_batch", 1) if d < 0 else d for d in inp.shape)
            profile.set_shape(inp.name, one, one, most)
    if profile is not None:
        config.add_optimization_profile(profile)
