"""Parsers for device logs: trtexec performance summaries and tegrastats power lines.

Pure text in, records out: no device, no TensorRT needed.  Truncated input
gives ``complete=False`` with the missing items named, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+)%\))\s*=\s*([-\d.eE+]+)\s*ms")
_METRICS = {
    "Latency": "latency", "End-to-End Host Latency": "e2e_host_latency", "Enqueue Time": "enqueue",
    "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute", "D2H Latency": "d2h",
}
REQUIRED = ("throughput_qps", "latency", "gpu_compute", "total_host_walltime_s", "result")


@dataclass
class TrtexecResult:
    """What a trtexec log says about performance, and what it is missing."""

    complete: bool
    missing: list[str]
    tensorrt_version: str | None = None
    throughput_qps: float | None = None
    stats_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    total_host_walltime_s: float | None = None
    total_gpu_compute_s: float | None = None
    passed: bool | None = None
    command: str | None = None


def _version(digits: str) -> str:
    # "[TensorRT v8201]" -> 8.2.1; "v101601" -> 10.16.1; "v8400" -> 8.4.0
    major, minor, patch = (digits[:-4], digits[-4:-2], digits[-2:]) if len(digits) >= 6 else (
        digits[0], digits[1], digits[2:])
    return f"{int(major)}.{int(minor)}.{int(patch)}"


def parse_trtexec(text: str) -> TrtexecResult:
    """Parse a trtexec log (TensorRT 8.x and 10.x formats)."""
    r = TrtexecResult(complete=False, missing=[])
    for line in text.splitlines():
        body = line.split("] ", 2)[-1] if line.startswith("[") else line
        if m := re.search(r"TensorRT version:\s*([\d.]+)", line):
            r.tensorrt_version = m.group(1)
        elif (m := re.search(r"&&&& (PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\][^#]*#\s*(.*)", line)):
            r.passed = m.group(1) == "PASSED"
            r.tensorrt_version = r.tensorrt_version or _version(m.group(2))
            r.command = m.group(3).strip()
        elif (m := re.search(r"TensorRT\.trtexec \[TensorRT v(\d+)\]", line)) and not r.tensorrt_version:
            r.tensorrt_version = _version(m.group(1))
        if m := re.match(r"Throughput:\s*([\d.eE+]+)\s*qps", body):
            r.throughput_qps = float(m.group(1))
        elif m := re.match(r"Total Host Walltime:\s*([\d.eE+]+)\s*s", body):
            r.total_host_walltime_s = float(m.group(1))
        elif m := re.match(r"Total GPU Compute Time:\s*([\d.eE+]+)\s*s", body):
            r.total_gpu_compute_s = float(m.group(1))
        else:
            for label, key in _METRICS.items():
                if body.startswith(label + ":"):
                    stats = {}
                    for name, pct, val in _STAT.findall(body):
                        stats[f"p{pct}" if pct else name] = float(val)
                    if stats:  # verbose logs also print "Latency: the latency of ..." help text
                        r.stats_ms[key] = stats
    have = {"throughput_qps": r.throughput_qps is not None, "latency": "latency" in r.stats_ms,
            "gpu_compute": "gpu_compute" in r.stats_ms, "total_host_walltime_s": r.total_host_walltime_s is not None,
            "result": r.passed is not None}
    r.missing = [k if k != "result" else "result line (&&&& PASSED/FAILED): log truncated or run aborted"
                 for k in REQUIRED if not have[k]]
    r.complete = not r.missing and bool(r.passed)
    return r


_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC", "EMC_FREQ", "GR3D_FREQ"}
_TIMESTAMP = re.compile(r"^\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2} ")


@dataclass
class TegraSample:
    """One tegrastats line: instantaneous power per rail (mW) and the chosen total."""

    rails_mw: dict[str, int]
    total_mw: int | None
    total_rail: str  # "POM_5V_IN", "VDD_IN", or "sum(...)"
    timestamp: str | None = None


def parse_tegrastats_line(line: str) -> TegraSample | None:
    """Parse one line (JetPack 4 plain mW, JetPack 5/6 'mW' units, optional timestamp); None if no rails."""
    line = line.strip()
    ts = None
    if m := _TIMESTAMP.match(line):
        ts = m.group(0).strip()
    rails = {name: int(cur) for name, cur, _avg in _RAIL.findall(line) if name not in _NOT_RAILS}
    if not rails:
        return None
    for total in ("POM_5V_IN", "VDD_IN"):
        if total in rails:
            return TegraSample(rails, rails[total], total, ts)
    return TegraSample(rails, sum(rails.values()), "sum(" + "+".join(rails) + ")", ts)


def parse_tegrastats(text: str) -> list[TegraSample]:
    """All samples of a tegrastats capture (lines without rails are skipped)."""
    return [s for s in (parse_tegrastats_line(ln) for ln in text.splitlines()) if s is not None]


def energy_per_inference_mj(
    samples: list[TegraSample], inferences: int, duration_s: float, idle_mw: float | None = None
) -> dict[str, Any]:
    """Mean total power over the timed window x duration / inferences; also above idle when known."""
    if not samples or inferences <= 0 or duration_s <= 0:
        return {"total_mj": None, "above_idle_mj": None, "reason": "no power samples in the timed window"}
    mean_mw = sum(s.total_mw or 0 for s in samples) / len(samples)
    total = mean_mw * duration_s / inferences  # mW * s = mJ
    above = (mean_mw - idle_mw) * duration_s / inferences if idle_mw is not None else None
    return {"total_mj": total, "above_idle_mj": above, "mean_mw": mean_mw, "rail": samples[0].total_rail,
            "samples": len(samples), "reason": None}


_TRT_MEM = re.compile(r"TensorRT-managed allocation in (?:IExecutionContext creation|engine deserialization)"
                      r".*?now: CPU \d+, GPU (\d+) \(MiB\)")


def trt_device_memory_mb(text: str) -> float | None:
    """Device memory TensorRT holds for the engine and its execution context (last report in the log)."""
    found = _TRT_MEM.findall(text)
    return float(found[-1]) if found else None


def parse_nvpmodel(text: str) -> str | None:
    """The power mode name from ``nvpmodel -q`` (e.g. "MAXN", "5W")."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return m.group(1) if m else None


def split_power_window(samples: list[TegraSample], interval_ms: float, idle_s: float,
                       wall_s: float) -> tuple[list[TegraSample], list[TegraSample]]:
    """(idle, timed) samples of one capture: an idle pause of ``idle_s``, then a run timed for ``wall_s``.

    The first samples cover the pause; the timed window is the trailing run of
    samples as long as ``wall_s``, leaving out the very last one (trtexec's
    teardown).  Sample counts, not timestamps: JetPack 4 prints none.
    """
    n_idle = int(idle_s * 1000 // interval_ms)
    idle, rest = samples[:n_idle], samples[n_idle:]
    n_timed = max(1, round(wall_s * 1000 / interval_ms))
    timed = rest[-(n_timed + 1):-1] if len(rest) > n_timed else rest
    return idle, timed
