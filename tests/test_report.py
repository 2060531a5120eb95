"""Reports a person can act on: the summary card, plots that fit, sortable self-contained HTML in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from scbp_edge.records import Report, RunFacts, Selection
from tests.helpers import cli, fast_target, point

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(small_run) -> Path:
    """The session's shared small build (conftest.small_run); these tests only read it."""
    return small_run


def _synthetic(n_points: int, n_segments: int) -> Report:
    """A report as build_report makes it, with many candidates and segments (input for the plot code)."""
    import random

    rnd = random.Random(0)
    pts = []
    for i in range(n_points):
        ratios = [rnd.choice([0, 0.25, 0.5, 0.75]) for _ in range(n_segments)]
        keep = 1 - sum(ratios) / n_segments
        pts.append(point(f"resnet18_r{'-'.join(str(int(100 * r)) for r in ratios)}_{'int8' if i % 2 else 'fp32'}",
                         network=str(i), precision="int8" if i % 2 else "fp32", ratios=tuple(ratios),
                         reference="seed" if i == 0 else None, is_seed=i == 0, accuracy=60 + 30 * keep,
                         accuracy_kind="test" if i % 17 == 0 else "proxy", proxy_accuracy=55 + 30 * keep,
                         test_accuracy=61 + 30 * keep if i % 17 == 0 else None,
                         p50_ms=0.5 + 3 * keep + rnd.random(), params=int(1e6 * keep), speedup=1.0))
    return Report(Selection(pts[7].id, "synthetic"), tuple(pts), tuple(p.id for p in pts[::7]),
                  RunFacts(target={"name": "cpu"}))


@pytest.mark.parametrize(("n_points", "n_segments"), [(12, 3), (200, 6)])
def test_every_plot_fits_its_canvas(n_points, n_segments):
    """Titles, labels, legends and colour bars inside the figure; heat-map column labels never overlap."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from scbp_edge.report.plots import HEATMAP_ROWS, figures

    figs = figures(_synthetic(n_points, n_segments))
    assert set(figs) >= {"latency_vs_accuracy", "latency_vs_params", "front_ratios_heatmap"}
    for name, fig in figs.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        # Everything drawn (tick labels in view, titles, axis labels, legend, colour bar) lies on the canvas:
        drawn = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
        assert drawn.x0 >= -1 and drawn.y0 >= -1 and drawn.x1 <= box.x1 + 1 and drawn.y1 <= box.y1 + 1, \
            f"{name}: something is cut off ({drawn} vs {box})"
        for t in fig.findobj(Text):  # and no title or label is clipped by its own axes
            if t.get_visible() and t.get_text().strip() and t in {*fig.texts, *(a.title for a in fig.axes),
                                                                  *(a.xaxis.label for a in fig.axes),
                                                                  *(a.yaxis.label for a in fig.axes)}:
                bb = t.get_window_extent(renderer)
                assert bb.x0 >= -1 and bb.x1 <= box.x1 + 1 and bb.y0 >= -1 and bb.y1 <= box.y1 + 1, t.get_text()
        if name == "front_ratios_heatmap":
            ax = fig.axes[0]
            assert len(ax.get_yticklabels()) <= HEATMAP_ROWS
            labels = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            for a, b in zip(labels, labels[1:]):
                assert a.x1 <= b.x0, "heat-map column labels overlap"
        plt.close(fig)


def test_summary_card_answers_which_how_much_faster_how_much_worse(run_dir):
    rep = json.loads((run_dir / "report.json").read_text())
    card = rep["card"]
    rows = dict(card["rows"])
    assert rep["selection"]["id"] in card["title"]
    assert "x faster" in rows["Speed-up, p50"] and " ms" in rows["Speed-up, p50"]
    assert "test top-1 after fine-tuning" in rows["Accuracy"]
    # issue 27: the number of test images, a 95 % interval, and the paired comparison with the seed
    assert re.search(r"\(\d+ test images, 95 % interval \d+\.\d-\d+\.\d\)", rows["Accuracy"]), rows["Accuracy"]
    assert "Weights" in rows
    assert " MB" in rows["Model file"] and " MB" in rows["Memory"]
    assert rows["Energy"].startswith("not measured")
    assert card["command"].startswith(f"scbp-edge package {run_dir} --candidate ")
    md = (run_dir / "report.md").read_text().splitlines()
    assert md[2].startswith("**Selected") and "Candidates: {" not in "\n".join(md), "internals on the first screen"


def test_html_report_highlights_the_selected_and_front_rows(run_dir):
    """The first column became the rank; the highlight must still find the candidate (issue 28)."""
    import re

    rep = json.loads((run_dir / "report.json").read_text())
    html = (run_dir / "report.html").read_text()
    sel = re.findall(r'<tr class="sel">(.*?)</tr>', html)
    assert len(sel) == 1 and f"<td>{rep['selection']['id']}</td>" in sel[0]
    front = re.findall(r'<tr class="front">(.*?)</tr>', html)
    assert len(front) == len(set(rep["front"]) - {rep["selection"]["id"]})


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_report_of_a_build_without_data_says_no_accuracy_was_measured(tmp_path):
    res = cli("build", "--target", str(fast_target(tmp_path)), "--data", "none", "--ratios", "0,0.5", "--limit", "2",
              "--runs", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads((Path(json.loads(res.stdout)["run_dir"]) / "report.json").read_text())
    assert dict(rep["card"]["rows"])["Accuracy"].startswith("not measured: the build had no data")


def test_report_command_prints_without_rewriting_the_run(run_dir):
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("report.*")}
    res = cli("report", str(run_dir), "--format", "github")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("## scbp-edge benchmark report") and "Package it:" in res.stdout
    front = json.loads((run_dir / "report.json").read_text())["front"]
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("| ") and "_r" in ln and "---" not in ln]
    assert front and sorted(ln.split(" | ")[1] for ln in rows) == sorted(front)  # one row per front member
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("report.*")} == before


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_terminal_summary_never_cuts_a_number(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, COLUMNS="80")
    res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", str(fast_target(tmp_path)),
                          "--ratios", "0,0.5", "--runs", str(tmp_path), "--top-k", "0", "--data", "none", "--limit",
                          "3"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout, res.stdout
    tables = [line for line in res.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables and max(len(line) for line in tables) <= 80, res.stdout  # commands and paths may run on


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/bootstrap.sh installs it as root)")
def test_html_report_renders_offline_in_a_real_browser(run_dir):
    from playwright.sync_api import sync_playwright

    html = (run_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html, "the report must work offline"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto((run_dir / "report.html").as_uri())
        assert page.locator("#card").is_visible()
        assert "faster" in page.locator("#card").inner_text()
        plots = page.locator("img.plot")
        assert plots.count() >= 3
        for i in range(plots.count()):
            img = plots.nth(i)
            img.scroll_into_view_if_needed()
            assert img.is_visible() and img.evaluate("e => e.naturalWidth > 0 && e.complete")
        first = lambda: page.locator("#candidates tbody tr td:nth-child(8)").all_inner_texts()  # noqa: E731
        page.locator("#candidates th", has_text="p50 ms").first.click()
        asc = [float(x) for x in first()]
        page.locator("#candidates th", has_text="p50 ms").first.click()
        desc = [float(x) for x in first()]
        assert asc == sorted(asc) and desc == sorted(desc, reverse=True)
        browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests




GOLDEN = Path(__file__).parent / "golden"
PLOTS = [Path("plots") / f"{n}.png" for n in ("latency_vs_accuracy", "latency_vs_params", "front_ratios_heatmap")]


@pytest.mark.parametrize("name", ["report", "failed"])
def test_sections_render_every_format_as_before(name):
    """Issue 45: the sections refactor changed no byte of report.md, the job summary or report.html.

    The golden files were rendered by the code before it, from a real default build's report.json (with its
    three plots, whose names alone reach the Markdown) and from a build whose every candidate failed.
    """
    from scbp_edge.report.render import render_github, render_html, render_markdown

    rep = json.loads((GOLDEN / f"{name}.json").read_text())
    assert render_markdown(rep, PLOTS if name == "report" else [], "RUN_DIR") == (GOLDEN / f"{name}.md").read_text()
    github = "github.md" if name == "report" else "failed_github.md"
    assert render_github(rep, "RUN_DIR") == (GOLDEN / github).read_text()
    assert render_html(rep, [], "RUN_DIR") == (GOLDEN / f"{name}.html").read_text()


def test_a_third_party_section_is_one_function_and_one_entry_point(tmp_path):
    """Installed through the entry-point group, it follows the built-in sections in every format it speaks."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(Path(__file__).parent / "plugin_section" / "scbp_site_section.py", site)
    script = ("import json, sys; from pathlib import Path; from scbp_edge.report.render import render_github, "
              "render_html, render_markdown; rep = json.loads(Path(sys.argv[1]).read_text()); "
              "plots = [Path(p) for p in sys.argv[2:]]; "
              "print(json.dumps([render_markdown(rep, plots), render_github(rep), render_html(rep, [])]))")

    def render() -> list[str]:
        res = subprocess.run([sys.executable, "-c", script, str(GOLDEN / "report.json"), *map(str, PLOTS)],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(site)))
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    before = [(GOLDEN / f).read_text() for f in ("report.md", "github.md", "report.html")]
    assert render() == before  # copied but not installed: no entry point, no section
    info = site / "scbp_site_section-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scbp-site-section\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[scbp_edge.report_sections]\nsite = scbp_site_section:build\n")
    md, github, page = render()
    pts = sorted(json.loads((GOLDEN / "report.json").read_text())["points"], key=lambda p: p["p50_ms"])
    assert md == before[0] + (f"\n## Site notes\n\n- {len(pts)} measured points\n\n| candidate | p50 ms |\n|---|---|\n"
                              + "".join(f"| {p['id']} | {p['p50_ms']:.3f} |\n" for p in pts[:2]))
    assert github == before[1]  # it has nothing for a job summary
    assert f'<h2>Site notes</h2><ul><li>{len(pts)} measured points</li></ul><table class="sortable"><thead>' in page
    assert page.index("<h2>Site notes</h2>") > page.index("<h2>Failed candidates</h2>" if "Failed" in page
                                                          else "<h2>Measured candidates</h2>")
    # a section that breaks is one line of the report, not a lost report
    (info / "entry_points.txt").write_text("[scbp_edge.report_sections]\nsite = scbp_site_section:broken\n")
    md, github, _ = render()
    assert md.startswith(before[0]) and "## Report section 'site' failed" in md
    assert "scbp_site_section:broken: ZeroDivisionError: division by zero" in md


def test_a_real_builds_rows_give_the_report_json_they_gave_before(tmp_path):
    """Issue 42: ranking and the report on records write the same report.json, field for field and value for value.

    tests/golden/report.json was written by a real default build before ranking and the report moved onto
    records; its rows and run facts go into a fresh run.sqlite and the report is built again from them.
    """
    from scbp_edge.records import CandidateRow, RunManifest, TeacherChoice, TrainingPlan, decode, encode
    from scbp_edge.report import build_report
    from scbp_edge.report.card import summary_card
    from scbp_edge.store import RunStore

    gold = json.loads((GOLDEN / "report.json").read_text())
    store = RunStore(tmp_path / "run.sqlite", create=True)
    store.start(decode(RunManifest, {**{k: gold["run"][k] for k in ("created", "config", "target", "runtime",
                                                                     "precisions", "notes", "seed", "segmentation")},
                                     **{k: gold[k] for k in ("fingerprints", "data")}}))
    plan = {k: v for k, v in gold["training"].items() if k in ("state", "networks", "why", "done")}
    store.update_progress(stage_seconds=gold["stage_seconds"], training=decode(TrainingPlan, plan),
                          teacher=decode(TeacherChoice, gold["weights"]["teacher"]))
    cands = gold["candidates"]
    store.add_candidates([CandidateRow.from_row(c) for c in cands])
    for c in cands:
        rec = CandidateRow.from_row(c)
        store.update(c["id"], status=rec.status, stage=rec.stage, error=rec.error, onnx=rec.onnx,
                     accuracy=rec.accuracy, measurement=rec.measurement, trained=rec.trained)
    rep = build_report(store)
    rep = replace(rep, card=summary_card(rep, gold["card"]["command"].split()[2]))  # the run folder it names
    got = json.loads(json.dumps(encode(rep), default=str))
    store.close()
    assert set(got) == set(gold)
    for p in got["points"] + [got["seed_point"]]:
        assert p.pop("batched") == []  # timed at larger batches: added after the golden build, empty on a CPU default
        if p.get("reconstruction"):  # residual writers: a field newer than the golden rows, which decode it empty
            assert p["reconstruction"].pop("residual") == []
            assert p["reconstruction"].pop("refined") is None  # the few-shot refinement: newer still, and off
        assert p.pop("scopes") == []  # issue 56: every segment of the golden build cut its stream
    assert got["weights"].pop("residual") == []  # issue 55: newer than the golden rows, which decode it empty
    # issue 59: the configuration is a record; options newer than the golden build read as their defaults
    config = got["run"].pop("config")
    assert {k: config[k] for k in gold["run"]["config"]} == gold["run"]["config"]
    gold = {**gold, "run": {k: v for k, v in gold["run"].items() if k != "config"}}
    for key in set(gold) - {"candidates"}:
        assert got[key] == gold[key], key
    assert [c["id"] for c in got["candidates"]] == [c["id"] for c in cands]


def test_an_interrupted_fine_tune_counts_the_networks_it_finished(tmp_path):
    """Issue 57: 4 of 6 networks fine-tuned before an interrupt read '0 of 6' (the stage's list is written last)."""
    from scbp_edge.records import CandidateRow, TrainingPlan, TrainingResult
    from scbp_edge.report import build_report
    from scbp_edge.store import RunStore

    store = RunStore(tmp_path / "run.sqlite", create=True)
    nets = [f"n{i}" for i in range(6)]
    store.add_candidates([CandidateRow(f"{n}_fp32", 0, n, "fp32", (0.5,)) for n in nets])
    for n in nets[:4]:
        store.update(f"{n}_fp32", trained=TrainingResult(test_accuracy=80.0))
    store.update_progress(training=TrainingPlan("running", tuple(nets)))
    t = build_report(store).training
    assert t is not None and t.interrupted and (t.trained, t.wanted) == (4, 6)
    store.close()


def test_the_report_counts_the_residual_writers_fitted_to_the_block_output(run_dir):
    """Issue 55: the block-output solve, on by default, was invisible in the report."""
    md = " ".join((run_dir / "report.md").read_text().split())
    rep = json.loads((run_dir / "report.json").read_text())
    writers = rep["weights"]["residual"]
    assert writers and all(w.endswith("conv2") or "downsample" in w or "shortcut" in w for w in writers), writers
    assert f"{len(writers)} residual writer(s)" in md
