"""Stand-ins for device tools (trtexec, tegrastats, nvpmodel) installed into a bin dir for SSH tests."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install(bin_dir: Path, trt_version: str, tegrastats_source: Path | None) -> Path:
    """Write the stand-ins as executables (shebang: this interpreter) into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tools = ["trtexec", "nvpmodel"] + (["tegrastats"] if tegrastats_source else [])
    for name in tools:
        exe = bin_dir / name
        exe.write_text(f"#!{sys.executable}\n" + (HERE / f"{name}.py").read_text())
        exe.chmod(0o755)
    (bin_dir / "trt_version").write_text(trt_version)
    if tegrastats_source:
        (bin_dir / "tegrastats_source").write_text(str(tegrastats_source))
    return bin_dir
