"""Where scbp-edge keeps things: its data folders (target TOMLs, Dockerfile templates) and its cache.

In a checkout they live in the top-level ``targets/`` and ``docker/`` folders,
where users look for them; a wheel carries copies under ``scbp_edge/_data/``
(hatchling ``force-include``), read with :mod:`importlib.resources`.
"""

from __future__ import annotations

import os
from importlib import metadata, resources
from pathlib import Path

from scbp_edge.errors import ScbpError

_ENV = {"targets": "SCBP_TARGETS_DIR"}


def data_dir(name: str) -> Path:
    """The ``targets`` or ``docker`` folder of this installation."""
    if os.environ.get(_ENV.get(name, "")):
        return Path(os.environ[_ENV[name]])
    packaged = resources.files("scbp_edge").joinpath("_data", name)
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    raise ScbpError(f"scbp-edge's '{name}' folder is missing from this installation ({packaged}); reinstall it")


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points of ``group`` by name, sorted; the first distribution on sys.path wins, as for imports."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return dict(sorted(found.items()))


def cache_dir() -> Path:
    """The user cache (trained default seed, TensorRT engines): $SCBP_CACHE_DIR, else XDG's."""
    if os.environ.get("SCBP_CACHE_DIR"):
        return Path(os.environ["SCBP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scbp-edge"
