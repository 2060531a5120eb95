"""The CLI's help: every option described, no value tags on flags (issue 21)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from scbp_edge.cli import main as cli


def _commands() -> dict:
    cli._register_optional()
    return dict(typer.main.get_command(cli.app).commands)  # typer 0.2x vendors click: duck-typed below


def _options(command) -> list:
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_is_described_and_flags_carry_no_type(name):
    command = _commands()[name]
    undocumented = [p.name for p in _options(command) if not (p.help or "").strip()]
    assert not undocumented, f"{name}: options without help: {undocumented}"
    res = CliRunner().invoke(cli.app, [name, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    flags = [p.opts[0] for p in _options(command) if p.is_flag]
    for line in res.output.splitlines():
        if any(f"{flag} " in line for flag in [*flags, "--help"]):
            assert "<bool>" not in line, line
    typed = [p.opts[0] for p in _options(command) if not p.is_flag]
    assert all(opt in res.output for opt in typed)


_NO_TORCH = """import sys
from scbp_edge.cli.main import main
sys.argv = ["scbp-edge", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    print("torch loaded:", "torch" in sys.modules, exc.code)
"""


@pytest.mark.parametrize("args, code", [
    (["--help"], 0), (["build", "--help"], 0), (["build", "--top-k", "-1"], 2), (["build", "--scope", "outer"], 2),
    (["inspect", "--trace-timeout", "nan"], 2), (["package", "nowhere", "-o", "ctx"], 2),
    (["compare", "a.json", "b.json"], 2), (["profile", "m.onnx", "--device", "ssh://-x@h"], 2),
])
def test_help_and_a_refused_value_answer_without_loading_torch(tmp_path, args, code):
    """Issue 60: loading torch took about 2 s of every CLI call, the refusals the suite checks by the hundred
    included; help and a value refused on its face now answer before it loads."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert res.stdout.splitlines()[-1] == f"torch loaded: False {code}", (res.stdout[-500:], res.stderr[-500:])
    assert not (tmp_path / "runs").exists()
