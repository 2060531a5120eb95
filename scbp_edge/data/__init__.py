"""Datasets: ImageFolder trees, also inside .tar/.tar.gz archives, and built-in digits.

Images are decoded once into a uint8 array (N, H, W, C) at the seed's input
size; corrupt files are skipped and counted, never fatal.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from scbp_edge.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = {"train": ("train",), "test": ("val", "test")}


@dataclass
class ImageSet:
    """Decoded images (N, H, W, C uint8), integer labels, class names, skipped files."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a user should know about the split (empty classes)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> ImageSet:
        return ImageSet(self.images[idx], self.labels[idx], self.classes, [])

    def tensors(self, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Float NCHW tensor normalised with the seed's mean/std, and int64 labels."""
        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(255.0)
        c = x.shape[1]
        m = torch.tensor(mean[:c]).view(1, c, 1, 1)
        s = torch.tensor(std[:c]).view(1, c, 1, 1)
        return (x - m) / s, torch.from_numpy(self.labels).long()


def _iter_folder(root: Path) -> Iterator[tuple[str, str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTS:
            rel = path.relative_to(root)
            if len(rel.parts) >= 2:
                yield rel.parts[0], str(rel), path.read_bytes()


def _tar_members(path: Path) -> dict[str, bytes]:
    """Every image member of an archive, read in full; damage anywhere is an error naming where it broke.

    tarfile stops quietly at the first header it cannot parse, so a stream
    damaged in the middle would look like a shorter archive: the rest of the
    stream is therefore read to its end (gzip checks its CRC there) and must
    hold nothing but the end-of-archive padding.
    """
    out: dict[str, bytes] = {}
    last = "(the first member)"
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts:  # nothing is extracted, but its class would be '..' or '/'
                    raise DataError(f"archive '{path}' holds member '{m.name[:120]}', whose path leaves the archive "
                                    "('..' or absolute); re-create the archive with relative class/image paths")
                if m.isfile() and p.suffix.lower() in IMAGE_EXTS and len(p.parts) >= 2:
                    f = tar.extractfile(m)
                    if f is not None:
                        out[m.name] = f.read()
                last = m.name
            fileobj = tar.fileobj
            trailing = b"".join(iter(lambda: fileobj.read(1 << 20), b""))
        if trailing.strip(b"\0"):
            raise tarfile.ReadError("data after the point where the archive stops being readable")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"archive '{path}' is damaged after member '{last}' ({str(exc)[:80]}); {len(out)} images "
                        "were read before it; re-create or re-download the archive") from None
    return out


def _iter_tar(path: Path) -> Iterator[tuple[str, str, bytes]]:
    members = _tar_members(path)
    # Archives hold "split/class/file" or "class/file": class is the parent folder.
    for name in sorted(members):
        yield PurePosixPath(name).parts[-2], name, members[name]


def _decode(blob: bytes, size: tuple[int, int], channels: int) -> np.ndarray:
    from scbp_edge.serving.image import decode

    return decode(blob, size, channels)  # the served model decodes exactly alike


def read_split(path: str | Path, size: tuple[int, int], channels: int = 3) -> ImageSet:
    """Read an ImageFolder split (a folder or a .tar/.tar.gz of it) at ``size`` (H, W)."""
    path = Path(path)
    if path.is_dir():
        entries = _iter_folder(path)
    elif path.is_file():
        entries = _iter_tar(path)
    else:
        raise DataError(f"split '{path}' does not exist; expected an ImageFolder folder or .tar/.tar.gz")
    images: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    for cls, name, blob in entries:
        try:
            images.append(_decode(blob, size, channels))
            names.append(cls)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files; skip, count and name
            skipped.append(f"{name} ({_why(exc)})")
    if not images:
        raise DataError(f"no readable images in '{path}' (expected <class>/<image> files)")
    classes = sorted(set(names))
    empty = sorted(_class_folders(path) - set(classes))
    notes = [f"class folder(s) {', '.join(empty)} of '{path}' hold no readable image and are left out"] if empty else []
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in names], dtype=np.int64)
    return ImageSet(np.stack(images), labels, classes, skipped, notes)


def _why(exc: Exception) -> str:
    """A skipped image's reason in a few words (PIL's messages name its own internals)."""
    from scbp_edge.serving.image import ImageError

    if isinstance(exc, ImageError):
        return str(exc).split(";")[0][:80]
    text = str(exc).lower()
    return "truncated" if "truncat" in text else "not a readable image"


def _class_folders(path: Path) -> set[str]:
    """Class folder names of a split folder (empty ones included); archives list only what they hold."""
    if not path.is_dir():
        return set()
    return {p.name for p in path.iterdir() if p.is_dir()}


def find_split(root: str | Path, split: str) -> Path:
    """``root/train`` or ``root/train.tar(.gz)``; for ``test`` also ``val``."""
    root = Path(root)
    for name in SPLIT_NAMES[split]:
        for cand in (root / name, root / f"{name}.tar.gz", root / f"{name}.tgz", root / f"{name}.tar"):
            if cand.exists():
                return cand
    wanted = " or ".join(SPLIT_NAMES[split])
    raise DataError(f"'{root}' has no {wanted} split; expected {wanted}/ or {wanted}.tar.gz holding class folders")


def read_warnings(*splits: ImageSet) -> list[str]:
    """One line per problem met while reading ``splits``: empty class folders, then the images left out."""
    out = list(dict.fromkeys(n for s in splits for n in s.notes))
    skipped = [f for s in splits for f in s.skipped]
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        out.append(f"{len(skipped)} image(s) could not be read and are left out: {', '.join(skipped[:3])}{more}")
    return out


def split_val(train: ImageSet, fraction: float = 0.1, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Carve a seeded, stratified validation split from ``train``; returns (train_rest, val)."""
    rng = np.random.default_rng(seed)
    val_idx: list[int] = []
    for c in range(len(train.classes)):
        idx = np.flatnonzero(train.labels == c)
        n = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        val_idx += rng.choice(idx, n, replace=False).tolist()
    mask = np.zeros(len(train), bool)
    mask[val_idx] = True
    rest, val = train.subset(np.flatnonzero(~mask)), train.subset(np.flatnonzero(mask))
    rest.skipped = list(train.skipped)
    return rest, val


def _fit(images: ImageSet, size: tuple[int, int], channels: int) -> ImageSet:
    """The set resized to ``size`` (H, W) and grey replicated to ``channels``: any seed can use the digits."""
    from PIL import Image

    arr = images.images
    if arr.shape[1:3] != tuple(size):
        arr = np.stack([np.asarray(Image.fromarray(a[:, :, 0]).resize((size[1], size[0]), Image.BILINEAR))[:, :, None]
                        for a in arr])
    if channels != arr.shape[3]:
        arr = np.repeat(arr[:, :, :, :1], channels, axis=3)
    return ImageSet(arr, images.labels, images.classes, images.skipped, images.notes)


def load_dataset(spec: str, size: tuple[int, int], channels: int) -> tuple[ImageSet, ImageSet]:
    """(train, test) of ``digits`` or of a folder with train/ and val|test/ splits (folders or tarballs)."""
    if spec == "digits":
        from scbp_edge.data.digits import load_digits_split

        return tuple(_fit(s, size, channels) for s in load_digits_split(0))  # type: ignore[return-value]
    root = Path(spec)
    if not root.is_dir():
        raise DataError(f"--data '{spec}' is neither 'digits' nor a folder holding train/ and val/ or test/")
    train = read_split(find_split(root, "train"), size, channels)
    test = read_split(find_split(root, "test"), size, channels)
    if len(train.classes) < 2:
        raise DataError(f"--data '{root}' has one class ({train.classes[0]}): every image would be classified right, "
                        "so accuracy means nothing; give at least two class folders")
    if train.classes != test.classes:
        empty = sorted((_class_folders(find_split(root, "train")) - set(train.classes))
                       | (_class_folders(find_split(root, "test")) - set(test.classes)))
        if empty and set(train.classes) ^ set(test.classes) <= set(empty):
            raise DataError(f"class folder(s) {', '.join(empty)} of '{root}' hold no readable image in one split; add "
                            "images to them, or remove those class folders from every split")
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise DataError(
            f"class folders differ between splits of '{root}': only in train {only_train}, only in test "
            f"{only_test}; every split needs the same class folders"
        )
    return train, test
