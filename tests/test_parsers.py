"""trtexec and tegrastats parsers on the real device logs in ../shared/fixtures."""

from __future__ import annotations

import pytest

from scbp_edge.runtimes.trtexec.parsers import energy_per_inference_mj, parse_tegrastats, parse_trtexec

COMPLETE = {
    "01_jetson_nano_trt8201_full_build_and_bench.txt": ("8.2.1", 11.0613, 90.3035, None),
    "02_jetson_nano_trt8201_summary_only.txt": ("8.2.1", 72.2544, 13.7999, None),
    "03_trt10_h100_hackathon_result01.txt": ("10.16.1", 15374.3, 0.0440674, 0.0450439),
    "04_trt10_h100_hackathon_result03.txt": ("10.16.1", 24896.9, 0.0388184, 0.0388489),
    "05_xavier_agx_trt8400_summary_oe4t_pr952.txt": ("8.4.0", 41087.7, 0.401947, None),
}


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_complete_trtexec_logs(shared, name):
    version, qps, median, p90 = COMPLETE[name]
    r = parse_trtexec((shared / "fixtures/trtexec" / name).read_text())
    assert r.complete and r.missing == [] and r.passed
    assert r.tensorrt_version == version and r.throughput_qps == qps
    assert r.stats_ms["latency"]["median"] == median
    assert r.stats_ms["latency"].get("p90") == p90 and "p99" in r.stats_ms["latency"]
    assert r.total_host_walltime_s > 2.9


def test_no_data_transfer_run_reports_zero_h2d(shared):
    r = parse_trtexec((shared / "fixtures/trtexec/04_trt10_h100_hackathon_result03.txt").read_text())
    assert r.stats_ms["h2d"]["mean"] == 0 and "--noDataTransfers" in r.command


@pytest.mark.parametrize(("name", "missing"), [
    ("06_xavier_nx_summary_oe4t_pr1124_TRUNCATED.txt", ["result line"]),
    ("07_trt10_desktop_summary_trt_issue4177_TRUNCATED.txt", ["result line"]),
    ("08_agx_orin_partial_summary_igev_issue8_TRUNCATED.txt", ["gpu_compute", "total_host_walltime_s", "result line"]),
])
def test_truncated_trtexec_logs_are_incomplete_not_crashes(shared, name, missing):
    r = parse_trtexec((shared / "fixtures/trtexec" / name).read_text())
    assert not r.complete
    for m in missing:
        assert any(x.startswith(m) for x in r.missing), r.missing
    assert r.throughput_qps is not None


def test_garbage_and_empty_logs():
    assert parse_trtexec("").missing and not parse_trtexec("hello\nworld").complete
    assert parse_tegrastats("nothing here") == []


def test_tegrastats_nano_pom_rail(shared):
    s = parse_tegrastats((shared / "fixtures/tegrastats/01_nano_jp4_sudo_tegrastats_terminal.txt").read_text())
    assert [x.total_mw for x in s] == [2132, 2247, 2132] and s[0].total_rail == "POM_5V_IN"
    assert s[0].rails_mw["POM_5V_GPU"] == 78 and "RAM" not in s[0].rails_mw


def test_tegrastats_boards(shared):
    text = (shared / "fixtures/tegrastats/02_multi_board_datadog_agent_test_samples.txt").read_text()
    by_board = {ln.split("\t")[0]: ln.split("\t", 1)[1] for ln in text.splitlines()[1:] if "\t" in ln}
    from scbp_edge.runtimes.trtexec.parsers import parse_tegrastats_line

    assert parse_tegrastats_line(by_board["tx2Sample"]).total_mw == 3056
    assert parse_tegrastats_line(by_board["nanoSample"]).total_rail == "POM_5V_IN"
    agx = parse_tegrastats_line(by_board["agXSample"])
    assert agx.total_rail.startswith("sum(") and agx.rails_mw["SOC"] == 932


def test_tegrastats_orin_jp6_timestamp_and_mw_units(shared):
    s = parse_tegrastats((shared / "fixtures/tegrastats/05_agx_orin_64gb_jp6_jetson_exporter_issue14.txt").read_text())
    assert s[0].timestamp == "04-11-2025 10:36:27"
    assert s[0].rails_mw == {"VDD_GPU_SOC": 2340, "VDD_CPU_CV": 390, "VIN_SYS_5V0": 4025, "VDDQ_VDD2_1V8AO": 301}
    e = energy_per_inference_mj(s, inferences=100, duration_s=2.0, idle_mw=5000)
    assert e["total_mj"] == pytest.approx(7056 * 2.0 / 100) and e["above_idle_mj"] == pytest.approx(2056 * 2 / 100)
