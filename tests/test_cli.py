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
