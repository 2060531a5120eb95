"""What every benchmark script shares: the paths, the shared seed's checkpoint, CIFAR-10's splits, a timed log
line, the ../shared check.

Scripts import it as a sibling (``from _common import ROOT, log``), as they import each other's public names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work"  # resumable runs keep their finished parts here (git-ignored)
#: the pretrained CIFAR seeds under SHARED/seeds/cifar10-resnet
SEEDS = {"cifar-resnet20": "resnet20-12fca82f.th", "cifar-resnet56": "resnet56-4bfd9763.th"}
T0 = time.perf_counter()


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's argument parser, described by the first line of its docstring (what ``--help`` shows)."""
    return argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)


def log(msg: str) -> None:
    """``msg`` on stderr behind the minutes since the script started."""
    print(f"[{(time.perf_counter() - T0) / 60:5.1f} min] {msg}", file=sys.stderr, flush=True)


def command() -> str:
    """The command line that ran this script, as its results record it."""
    return " ".join([f"python benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def publish(out: Path, name: str, res: dict[str, Any], text: str) -> None:
    """Write ``out``/``name``.json and .md through the product's ``lab.write_results``, and print the Markdown."""
    from scbp_edge.lab import write_results

    out.mkdir(parents=True, exist_ok=True)
    write_results(out, name, res, text)
    print(text)


def cifar(split: str) -> Any:
    """CIFAR-10's ``split`` ("train" or "test") from ../shared at 32 x 32, as the product reads a folder of images."""
    from scbp_edge.lab import read_split

    return read_split(SHARED / f"data/cifar10-jpeg/{split}.tar.gz", (32, 32))


def cifar_train_val(fraction: float = 0.1, seed: int = 0) -> tuple[Any, Any]:
    """CIFAR-10's training split less a validation share, and that share, drawn as a build draws them."""
    from scbp_edge.lab import split_val

    return split_val(cifar("train"), fraction, seed)


def missing_shared(*needed: str) -> str | None:
    """A one-line refusal when ../shared lacks what a script needs (default: CIFAR-10 and the seeds), else None."""
    paths = needed or ("data/cifar10-jpeg/train.tar.gz", "seeds/cifar10-resnet")
    gone = [p for p in paths if not (SHARED / p).exists()]
    return f"needs ../shared ({', '.join(gone)} not found under {SHARED})" if gone else None


def trained_seed(model: Any, x: Any, y: Any, tx: Any, ty: Any, *, images: int, epochs: int, lr: float,
                 cache: Path) -> dict[str, Any]:
    """``model`` (a seed) trained plainly on the first ``images`` of ``x``, as a seed that has seen the user's data.

    Trained once and cached as ``cache``.pt and .json; returns the state dict under "state" beside the recipe and
    its test top-1 on ``tx``, ``ty``.
    """
    import copy
    import json

    import torch

    from scbp_edge.lab import evaluate, train

    path, info = cache.parent / f"{cache.name}.pt", cache.parent / f"{cache.name}.json"
    if not path.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        log(f"training the seed on {images:,} images x {epochs} epochs (once; cached in {path})")
        t = time.perf_counter()
        out = train(copy.deepcopy(model), x[:images], y[:images], epochs=epochs, lr=lr, flip=True, seed=0)
        torch.save(out.state_dict(), path)
        info.write_text(json.dumps({"epochs": epochs, "lr": lr, "images": images, "test": evaluate(out, tx, ty),
                                    "train_s": round(time.perf_counter() - t)}))
    return {"state": torch.load(path, weights_only=True), **json.loads(info.read_text())}
