"""Commands that ship a model: package, serve, compare."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.table import Table

from scbp_edge.cli.common import JsonOpt, console, emit_json, out
from scbp_edge.records import encode


def package(
    run_dir: Path = typer.Argument(..., help="A finished run directory"),
    candidate: str = typer.Option("best", "--candidate", help="Candidate id, or 'best' (the run's selection)"),
    target: str | None = typer.Option(None, "--target", help="Target whose image is made (default: the run's)"),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the Docker build context (new or empty)"),
    force: bool = typer.Option(False, "--force", help="Replace an earlier context's own files (as its manifest lists)"),
    base_image: str | None = typer.Option(None, "--base-image", help="Base image (default: the target's base_image)"),
    build: bool = typer.Option(False, "--build", help="Also build the image (with docker, else podman)"),
    run: bool = typer.Option(False, "--run", help="Build, then start the image and print its URL"),
    tag: str | None = typer.Option(None, "--tag", help="Image tag (default: scbp-model:<candidate>)"),
    engine: str | None = typer.Option(None, "--engine", help="docker or podman (default: whichever is installed)"),
    port: int = typer.Option(8080, "--port", help="Host port that --run publishes (on 127.0.0.1)"),
    build_network: str | None = typer.Option(None, "--build-network", help="Network for the build's RUN steps "
                                             "(e.g. host, where the bridge cannot reach the package index)"),
) -> None:
    """Write a Docker build context (model, Dockerfile, manifest, serving code) for one candidate."""
    from scbp_edge.errors import RecordError
    from scbp_edge.package import package as make
    from scbp_edge.runtimes import check_target
    from scbp_edge.targets import load_target, stored_target

    if target is None:
        try:
            saved = json.loads((run_dir / "report.json").read_text())["run"]["target"]
            t = stored_target(saved)
        except (OSError, ValueError, KeyError, TypeError, RecordError):
            t = load_target("cpu")
    else:
        t = load_target(target)
    check_target(t)
    path = make(run_dir, candidate, t, output, force=force, base_image=base_image)
    manifest = json.loads((path / "manifest.json").read_text())
    console.print(f"wrote {path}: {manifest['candidate']} ({manifest['dockerfile']})")
    if not (build or run):
        console.print(f"build with: docker build -t scbp-model {path}  (or: scbp-edge package ... --build); "
                      f"run with: docker run {' '.join([*t.run_args, '-p', '8080:8080'])} scbp-model", soft_wrap=True)
        return
    _build_and_run(path, tag or image_tag(manifest["candidate"]), engine, run, port, build_network, t.run_args)


def image_tag(candidate: str) -> str:
    """A valid image tag for a candidate id (lower case, [a-z0-9_.-], at most 128 characters)."""
    import re

    return "scbp-model:" + (re.sub(r"[^a-z0-9_.-]+", "-", candidate.lower()).strip(".-")[:128] or "latest")


def _build_and_run(context: Path, tag: str, engine: str | None, run: bool, port: int,
                   network: str | None, run_args: list[str]) -> None:
    from scbp_edge.package import container

    name = container.find_engine(engine)
    with console.status(f"building {tag} with {name} (pip installs the runtime; takes minutes)"):
        size = container.build_image(context, tag, name, network=network)
    console.print(f"built {tag} with {name}: {size / 1e6:.0f} MB", soft_wrap=True)
    if run:
        started = container.run_image(tag, name, run_args=run_args, port=port)
        console.print(f"serving at {started.url} (ready in {started.ready_s:.1f} s); "
                      f"stop with: {name} stop {started.container[:12]}", soft_wrap=True)
        out.print(started.url)


def serve(
    model: Path = typer.Argument(..., help="An ONNX file (manifest.json beside it sets preprocessing)"),
    port: int = typer.Option(8080, "--port", help="TCP port (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)"),
    target: str = typer.Option("cpu", "--target", help="Target whose runtime serves the model"),
    token_file: Path | None = typer.Option(None, "--token-file", help="Require this bearer token (else $SCBP_TOKEN)"),
    workers: int = typer.Option(8, "--workers", help="Requests served at once (more wait in the backlog)"),
    request_timeout: float = typer.Option(10.0, "--request-timeout", help="Seconds a whole request may take to "
                                          "arrive"),
) -> None:
    """Serve a model over HTTP: POST /predict, GET /healthz, GET /metrics (Prometheus)."""
    from scbp_edge.errors import TargetError
    from scbp_edge.export.files import check_onnx_file
    from scbp_edge.runtimes import runtime_class
    from scbp_edge.serving import server
    from scbp_edge.targets import load_target

    t = load_target(target)
    check_onnx_file(model)
    cls = runtime_class(t.backend)
    serving = runtime_class(cls.serves_with) if cls.serves_with else cls
    if not cls.capabilities.deployable:
        raise TargetError(f"runtime '{t.backend}' of target '{t.name}' cannot serve models; use a deployable one")
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise TargetError(f"--token-file '{token_file}' cannot be read ({exc.strerror})") from None
        if not token:
            raise TargetError(f"--token-file '{token_file}' is empty")
    if workers < 1:
        raise TargetError(f"--workers {workers} must be at least 1")
    if not (math.isfinite(request_timeout) and request_timeout > 0):  # inf would turn the bound off unsaid
        raise TargetError(f"--request-timeout {request_timeout} must be a finite number of seconds above 0")
    server.serve(str(model), serving().session_class(), host, port, None, token or server.read_token(),
                 workers=workers, timeout=request_timeout)


def compare(
    baseline: Path = typer.Argument(..., help="Baseline report.json"),
    current: Path = typer.Argument(..., help="Current report.json"),
    max_regression: str = typer.Option("5%", "--max-regression", help="Allowed worsening, e.g. 5%"),
    force: bool = typer.Option(False, "--force", help="Compare runs of different weights, data or targets anyway"),
    json_out: bool = JsonOpt,
) -> None:
    """Exit 1 when a tracked metric regresses beyond the threshold and beyond measured noise."""
    import math

    from scbp_edge.errors import RunError
    from scbp_edge.report.compare import as_report, check_comparable
    from scbp_edge.report.compare import compare as run

    try:
        thr = float(max_regression.rstrip("%")) / (100 if max_regression.endswith("%") else 1)
    except ValueError:
        raise RunError(f"--max-regression '{max_regression}' is not a number like 5%") from None
    if not math.isfinite(thr) or thr < 0:
        raise RunError(f"--max-regression '{max_regression}' must be 0 % or more")
    reports = []
    for name, p in (("baseline", baseline), ("current", current)):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise RunError(f"cannot read report '{p}' ({type(exc).__name__}); pass a report.json of a run") from None
        reports.append(as_report(name, data))
    check_comparable(reports[0], reports[1], force)
    deltas = run(reports[0], reports[1], thr)
    if not deltas:
        raise RunError("the two reports share no measured candidate; compare runs of the same seed and space")
    bad = [d for d in deltas if d.verdict == "regression"]
    if json_out:
        emit_json({"regressions": len(bad), "deltas": [encode(d) for d in deltas]})
    else:
        table = Table(title=f"compare (threshold {thr:.0%})")
        for col in ("candidate", "metric", "baseline", "current", "change", "verdict", "why"):
            table.add_column(col, overflow="fold")
        for d in deltas:
            if d.verdict != "ok":
                table.add_row(d.candidate, d.metric, f"{d.baseline:.4g}", f"{d.current:.4g}", f"{d.change:+.1%}",
                              d.verdict, d.why)
        out.print(table)
        out.print(f"{len(bad)} regression(s), {sum(d.verdict == 'noise' for d in deltas)} within noise, "
                  f"{len(deltas)} metrics compared")
    if bad:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    for fn in (package, serve, compare):
        app.command()(fn)
