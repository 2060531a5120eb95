"""Shared fixtures: ../shared data (skip when absent, fail when SCBP_REQUIRE_SHARED=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; skips (or fails under SCBP_REQUIRE_SHARED=1) when absent."""
    if not (SHARED / "README.md").is_file():
        msg = f"../shared not found at {SHARED}"
        if os.environ.get("SCBP_REQUIRE_SHARED") == "1":
            pytest.fail(msg + " and SCBP_REQUIRE_SHARED=1")
        pytest.skip(msg)
    return SHARED


@pytest.fixture(scope="session")
def cifar_test(shared: Path):
    """The shared CIFAR-10 JPEG test split, decoded once per session."""
    from scbp_edge.data import read_split

    return read_split(shared / "data/cifar10-jpeg/test.tar.gz", (32, 32))
