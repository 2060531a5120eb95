"""RAPL energy reader: real sysfs-layout files, counter wrap-around, honest null."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "ort_worker", Path(__file__).resolve().parents[1] / "scbp_edge/runtimes/onnxruntime/worker.py"
)
ort_worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ort_worker)


def _domain(root: Path, name: str, energy: int, wrap: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{wrap}\n")
    return d


def test_rapl_delta_handles_wraparound(tmp_path):
    d0 = _domain(tmp_path, "intel-rapl:0", 999_000, 1_000_000)
    d1 = _domain(tmp_path, "intel-rapl:1", 5_000, 1_000_000)
    _domain(tmp_path, "intel-rapl:0/intel-rapl:0:0", 1, 10)  # sub-zone: must not be double counted
    rapl = ort_worker.Rapl(str(tmp_path))
    assert rapl.reason is None and len(rapl.domains) == 2
    before = rapl.read()
    (d0 / "energy_uj").write_text("1000\n")  # wrapped: 999000 -> 1000000 == 0 -> 1000
    (d1 / "energy_uj").write_text("7000\n")
    assert rapl.delta_uj(before, rapl.read()) == 2_000 + 2_000


def test_rapl_absent_gives_reason_not_number(tmp_path):
    rapl = ort_worker.Rapl(str(tmp_path / "none"))
    assert rapl.read() is None and rapl.delta_uj(None, None) is None
    assert "no RAPL domain" in rapl.reason


def test_worker_reports_rapl_energy_end_to_end(tmp_path, monkeypatch):
    """A real worker reading a powercap-layout tree: energy is a number (here 0: static counters)."""
    from scbp_edge.api import SeedOptions, Workbench
    from scbp_edge.export.onnx import export_onnx
    from scbp_edge.measure import profile_one
    from scbp_edge.targets import load_target
    from tests.helpers import fast_target

    _domain(tmp_path / "powercap", "intel-rapl:0", 123, 1 << 32)
    monkeypatch.setenv("SCBP_RAPL_ROOT", str(tmp_path / "powercap"))
    wb = Workbench(SeedOptions("cifar-resnet20"))
    _, model = wb.candidate([0.5, 0.5, 0.5])
    path = tmp_path / "m.onnx"
    export_onnx(model, (3, 32, 32), path)
    m = profile_one(path, load_target(str(fast_target(tmp_path))))
    assert m.energy.reason is None and m.energy.mj_per_inference == 0.0 and m.energy.idle_w == 0.0
    assert m.energy.above_idle_mj == 0.0
