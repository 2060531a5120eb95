"""Count the string-keyed dict accesses left in the package (issue 42: typed records between stages).

Counted: ``x["key"]``, ``x['key']`` and ``.get``, ``.pop`` and ``.setdefault``
with a literal key, in either quote style (issue 59 step 7: the first count saw
only double quotes and ``.get``), in scbp_edge/.  Not counted, as issue 42
defines it: the JSON codec of the records, CLI parsing, and the self-contained
device code (every runtime's worker and serving files and the serving package,
taken from the runtime registry: they run on the device's own Python 3.6 and
cannot import the records).  The benchmarks are counted on a line of their own.

Run: .venv/bin/python scripts/count_string_keys.py [--files] [--max N]
(``--max``: exit 1 when the package's count is above N, for a ratchet).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scbp_edge"
PATTERN = re.compile(r"""\[(["'])[A-Za-z0-9_ -]+\1\]|\.(?:get|pop|setdefault)\((["'])[A-Za-z0-9_ -]+\2""")


def device_files() -> set[Path]:
    """Files that run on devices and in images, from the runtime registry plus the serving package."""
    from scbp_edge.runtimes import runtime_class, runtime_names

    files = {f.resolve() for n in runtime_names() for f in (*runtime_class(n).remote_files,
                                                            *runtime_class(n).serve_files)}
    return files | {f.resolve() for f in (PACKAGE / "serving").glob("*.py")}


def counts(folder: Path = PACKAGE) -> dict[str, int]:
    """String-key accesses per counted file of ``folder`` (relative path), files with none left out."""
    skip = device_files() | {(PACKAGE / "records" / "codec.py").resolve()}
    out = {}
    for f in sorted(folder.rglob("*.py")):
        if f.resolve() in skip or (PACKAGE / "cli") in f.parents:
            continue
        n = len(PATTERN.findall(f.read_text()))
        if n:
            out[str(f.relative_to(ROOT))] = n
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", action="store_true", help="list the count of every file, largest first")
    ap.add_argument("--max", type=int, default=None, help="exit 1 when the count is above this")
    args = ap.parse_args()
    per_file = counts()
    total = sum(per_file.values())
    benches = counts(ROOT / "benchmarks")
    if args.files:
        for name, n in sorted({**per_file, **benches}.items(), key=lambda kv: -kv[1]):
            print(f"{n:5d}  {name}")
    print(f"benchmarks: {sum(benches.values())}")
    print(total)
    if args.max is not None and total > args.max:
        print(f"{total} string-key accesses, above the ratchet of {args.max}: use or add a record "
              "(scbp_edge/records/) instead of a dict", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
