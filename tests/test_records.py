"""The typed records and their one JSON codec (issue 42 step 1), on rows and reports of real builds.

tests/golden/rows.json holds every candidate row of four real builds (a default build with fine-tuned
candidates, one whose every candidate failed, a --train-minutes build, a container build), as the store
decoded them; report.json and failed.json are two real report.json files.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from scbp_edge.errors import RecordError
from scbp_edge.records import (
    BuildConfig,
    CandidateRow,
    LatencyStats,
    Measurement,
    Report,
    StaticCosts,
    decode,
    encode,
    seed_judgement,
)

GOLDEN = Path(__file__).parent / "golden"
ROWS = json.loads((GOLDEN / "rows.json").read_text())


#: fields whose value in a file written before them is what the run meant then (codec.legacy), not empty
LEGACY = {f.name: f.metadata["scbp_legacy"] for f in dataclasses.fields(BuildConfig) if "scbp_legacy" in f.metadata}


def _without_filled_defaults(back, original):
    """``back`` less the optional keys the original never had, which decoding fills with their defaults."""
    if isinstance(back, list):
        return [_without_filled_defaults(b, o) if isinstance(b, (dict, list)) and isinstance(o, type(b)) else b
                for b, o in zip(back, original, strict=False)] + back[len(original):]
    out = {}
    for k, v in back.items():
        if k not in original:
            assert v in (None, (), [], {}), f"{k} was added with a value: {v!r}"
            continue
        out[k] = _without_filled_defaults(v, original[k]) if isinstance(v, (dict, list)) and isinstance(
            original[k], type(v)) else v
    return out


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{r['id']}" for i, r in enumerate(ROWS)])
def test_every_stored_row_of_a_real_build_round_trips(row):
    rec = CandidateRow.from_row(row)
    assert rec.status == row["status"] and rec.ratios == tuple(row["ratios"])
    back = rec.to_row()
    assert _without_filled_defaults(back, row) == row  # nothing lost, nothing changed
    assert CandidateRow.from_row(back) == rec


def test_the_rows_cover_what_the_records_type():
    recs = [CandidateRow.from_row(r) for r in ROWS]
    assert {r.status for r in recs} == {"measured", "failed"}
    measured = [r for r in recs if r.measurement is not None]
    assert measured and all(isinstance(r.measurement.latency, LatencyStats) for r in measured)
    assert any(r.trained is not None and r.trained.test_correct for r in recs)
    assert any(r.error for r in recs if r.status == "failed")
    # the codec reads a measurement into its typed parts
    row = next(r for r in ROWS if r["measurement"])
    m = decode(Measurement, row["measurement"])
    assert m.latency.p50_ms == row["measurement"]["latency"]["p50_ms"] and m.energy.source


@pytest.mark.parametrize("name", ["report", "failed"])
def test_a_real_report_json_round_trips(name):
    """Exactly, less the fields added since it was written (a point's ``batched``), which decode to their defaults."""
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    rep = Report.from_json(data)
    back = json.loads(json.dumps(rep.to_json()))
    # the configuration is a record now: each stored option reads back as stored, every later one as its default
    # (or what an older run meant by it)
    config = back["run"].pop("config")
    assert {k: config[k] for k in data["run"]["config"]} == data["run"]["config"]
    assert {k: v for k, v in config.items() if k not in data["run"]["config"]} == {
        k: LEGACY.get(k, v) for k, v in encode(BuildConfig()).items() if k not in data["run"]["config"]}
    assert _without_filled_defaults(back, data) == {**data, "run": {k: v for k, v in data["run"].items()
                                                                     if k != "config"}}
    assert rep.selection.id == data["selection"]["id"] and len(rep.points) == len(data["points"])
    assert rep.card is not None and rep.card.title == data["card"]["title"]


def test_keys_a_record_does_not_name_stay_in_its_extra():
    costs = decode(StaticCosts, {"params": 3, "macs": 7, "size_bytes": 12, "ghost_macs": 5})
    assert costs.extra == {"ghost_macs": 5} and encode(costs)["ghost_macs"] == 5


@pytest.mark.parametrize("change, message", [
    (lambda r: r["measurement"]["latency"].update(p50_ms="fast"), "latency.p50_ms: expected float, got str"),
    (lambda r: r["measurement"].update(watts=3.0), "unknown field 'watts'"),
    (lambda r: r["measurement"]["latency"].pop("p50_ms"), "missing field 'p50_ms'"),
    (lambda r: r.update(status="finished"), "'finished' is not one of"),
    (lambda r: r.update(ratios=[0.5, "half"]), "ratios[1]: expected float"),
])
def test_a_value_that_does_not_fit_is_refused_naming_where(change, message):
    row = json.loads(json.dumps(next(r for r in ROWS if r["measurement"])))
    change(row)
    with pytest.raises(RecordError) as err:
        CandidateRow.from_row(row)
    assert message in str(err.value) and str(err.value).startswith(f"candidate {row['id']}")


def test_the_seed_judgement_reads_the_stored_validation():
    row = next(r for r in ROWS if r["trained"])
    trained = dict(row["trained"], validation={"as it came": 89.6, "fine-tuned": 89.4, "images": 500,
                                               "kept": "as it came"})
    j = seed_judgement(CandidateRow.from_row(dict(row, trained=trained)).trained)
    assert (j.as_it_came, j.fine_tuned, j.images, j.kept) == (89.6, 89.4, 500, "as it came")
    assert seed_judgement(CandidateRow.from_row(row).trained) is None


def test_the_store_reads_and_writes_records(tmp_path):
    """A real run.sqlite: real rows written as records come back as the same records, and as the old dicts."""
    from scbp_edge.records import TrainingResult
    from scbp_edge.store import RunStore

    store = RunStore(tmp_path / "run.sqlite", create=True)
    originals = ROWS[:6]
    store.add_candidates([CandidateRow.from_row(r) for r in originals])  # only what is known before any work
    for r in originals:  # each JSON column written as a record, not a dict
        rec = CandidateRow.from_row(r)
        store.update(r["id"], status=rec.status, stage=rec.stage, error=rec.error, onnx=rec.onnx,
                     accuracy=rec.accuracy, measurement=rec.measurement, trained=rec.trained)
    rows = {r.id: r for r in store.rows()}
    for r in originals:  # the same record, but for where and when this store put it
        want = CandidateRow.from_row(r)
        assert dataclasses.replace(rows[r["id"]], position=want.position, updated=want.updated) == want
    seed = next(r for r in originals if r["trained"])
    store.update(seed["id"], trained=TrainingResult(test_accuracy=88.0, validation={
        "as it came": 89.6, "fine-tuned": 89.4, "images": 500, "kept": "as it came"}))
    got = next(r for r in store.rows() if r.id == seed["id"])
    assert seed_judgement(got.trained).kept == "as it came"
    assert next(c for c in store.salvage()[0] if c["id"] == seed["id"])["trained"]["test_accuracy"] == 88.0  # as stored
    store.close()


def test_a_measurement_keeps_its_larger_batches_through_the_store_and_the_codec():
    """Issue 46: a target's batch sizes above 1 are timed; older rows (no ``batched``) still decode to none."""
    from scbp_edge.records import Batched

    row = next(r for r in ROWS if r.get("measurement"))
    old = decode(Measurement, row["measurement"])
    assert old.batched == [] and old.at_batch(8) is None
    lat = LatencyStats.from_samples([4.0, 4.2, 4.1], batch=8)
    new = dataclasses.replace(old, batched=[Batched(lat, 1.7)])
    back = decode(Measurement, json.loads(json.dumps(encode(new))))
    assert back.at_batch(8) == Batched(lat, 1.7) and back.at_batch(4) is None
    assert decode(Measurement, encode(new)).at_batch(8).latency.throughput_ips == pytest.approx(8000 / 4.1, rel=1e-3)


def test_benchmark_results_are_written_whole_as_json_and_markdown(tmp_path):
    from scbp_edge.lab import write_results

    (tmp_path / "b.md").write_text("old")
    js, md = write_results(tmp_path, "b", {"when": Path("x"), "n": 1}, "# new\n")
    assert json.loads(js.read_text()) == {"when": "x", "n": 1} and md.read_text() == "# new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "b.md"]  # no part files left behind


def test_a_run_from_before_scopes_opens_and_reads_as_all_stream(tmp_path):
    """Issue 56: a store without the scopes column gains it on opening, and its rows cut every segment's stream."""
    from scbp_edge.store import SCHEMA, RunStore

    path = tmp_path / "run.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.replace("    scopes TEXT NOT NULL DEFAULT '[]',\n", ""))
    db.execute("INSERT INTO candidates (id, position, network, precision, ratios, updated) VALUES "
               "('n_r50_fp32', 0, 'n_r50', 'fp32', '[0.5]', 0)")
    db.commit()
    db.close()
    readonly = RunStore(path, readonly=True)  # a report of an old run never changes the file
    assert [r.scopes for r in readonly.rows()] == [()]
    readonly.close()
    store = RunStore(path)
    assert [(r.id, r.scopes) for r in store.rows()] == [("n_r50_fp32", ())]
    store.add_candidates([CandidateRow("n_r50i_fp32", 0, "n_r50i", "fp32", (0.5,), scopes=("inner",))])
    assert [r.scopes for r in store.rows()] == [(), ("inner",)]
    store.close()


def test_the_build_configuration_is_a_frozen_record_that_round_trips_and_reads_old_runs():
    """Issue 59 step 1: BuildConfig, SeedOptions and Constraints are records; what older runs left out reads as
    they meant it (no scope column: every segment's stream; a local run's stored retries: none)."""
    from scbp_edge.pipeline.config import differences, stored_config
    from scbp_edge.records import BuildConfig, Constraints, SeedOptions

    cfg = BuildConfig(seed=SeedOptions("cifar-resnet56", round_to=16), exclude=("*,0.5,*",), precisions=("fp32",),
                      constraints=Constraints(max_latency_ms=3.0), scope="inner")
    assert stored_config(json.loads(json.dumps(encode(cfg)))) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed.round_to = 8  # type: ignore[misc]
    old = encode(BuildConfig())
    del old["scope"]
    old.update(retries=2, ray_address=None, executor="local")
    back = stored_config(old)
    assert (back.scope, back.retries, BuildConfig().scope) == ("stream", None, "both")
    with pytest.raises(RecordError, match="unknown field 'colour'"):
        stored_config({**old, "colour": "red"})
    given = dataclasses.replace(BuildConfig(), ratios="0,0.25", lr=0.5, precisions=("int8",))
    assert differences(given, back) == ["--ratios 0,0.25", "--lr 0.5", "--precision int8"]
    assert differences(dataclasses.replace(BuildConfig(), ratios=back.ratios), back) == []


def test_the_run_ledger_is_a_manifest_and_a_progress_record_that_reads_old_runs(tmp_path):
    """Issue 59 step 2: the run's facts go in and come out of the store as two records; a run written key by key
    before them (the meta table's JSON) reads as the same records, and what it never wrote as the defaults."""
    from scbp_edge.records import DataSummary, MeasureBudget, RunManifest, RunProgress, TeacherChoice, TrainingPlan
    from scbp_edge.store import SCHEMA, RunStore

    gold = json.loads((GOLDEN / "report.json").read_text())
    old = {**gold["run"], "fingerprints": gold["fingerprints"], "data": gold["data"], "teacher": gold["weights"][
        "teacher"], "stage_seconds": gold["stage_seconds"], "budget": {"budget": 4, "measured": 4, "not_measured": 2}}
    path = tmp_path / "run.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in old.items()])
    db.execute("INSERT INTO meta VALUES ('training', 'not json')")  # an unreadable field reads as its default
    db.commit()
    db.close()
    store = RunStore(path)
    run, done = store.manifest(), store.progress()
    assert run.config == decode(BuildConfig, gold["run"]["config"])
    assert run.precisions == tuple(gold["run"]["precisions"])
    assert run.facts().target == gold["run"]["target"] and run.data == DataSummary(**{**gold["data"], "skipped": ()})
    assert done.teacher == TeacherChoice(**gold["weights"]["teacher"]) and done.budget == MeasureBudget(4, 4, 2)
    assert done.training is None and done.classifier_replaced is None and done.stage_seconds == gold["stage_seconds"]
    plan = TrainingPlan("running", ("a", "b"), {"a": "on the front"})
    now = store.update_progress(training=plan, stage_seconds={"derive": 1.5})
    assert now == store.progress() == dataclasses.replace(done, training=plan, stage_seconds={"derive": 1.5})
    with pytest.raises(TypeError):
        store.update_progress(stage_secs={})  # a misspelt field is refused, not stored beside the others
    store.close()
    fresh = RunStore(tmp_path / "new.sqlite", create=True)
    assert (fresh.manifest(), fresh.progress()) == (RunManifest(), RunProgress())  # stopped before any work
    fresh.start(run)
    assert fresh.manifest() == run
    fresh.close()
