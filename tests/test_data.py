"""Data: ImageFolder reader on folders and tarballs, corrupt images, class mismatches."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from scbp_edge.data import find_split, load_dataset, read_split, split_val
from scbp_edge.errors import DataError


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="JPEG")
    return buf.getvalue()


def _tar(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tarball_with_corrupt_image_skips_and_counts(tmp_path):
    _tar(tmp_path / "train.tar.gz", {
        "train/cat/1.jpg": _jpeg("red"), "train/cat/2.jpg": b"\xff\xd8 broken jpeg",
        "train/dog/1.jpg": _jpeg("blue"), "train/dog/2.jpg": _jpeg("green"),
    })
    s = read_split(tmp_path / "train.tar.gz", (4, 4))
    assert s.classes == ["cat", "dog"] and len(s) == 3
    # each skipped file named with why, in words (not PIL's internals)
    assert len(s.skipped) == 1 and s.skipped[0].startswith("train/cat/2.jpg (") and "image" in s.skipped[0]
    assert s.images.shape == (3, 4, 4, 3) and list(s.labels) == [0, 1, 1]


def test_missing_class_in_test_split_is_a_clear_error(tmp_path):
    _tar(tmp_path / "train.tar.gz", {"train/cat/1.jpg": _jpeg("red"), "train/dog/1.jpg": _jpeg("blue")})
    _tar(tmp_path / "test.tar.gz", {"test/cat/1.jpg": _jpeg("red")})
    with pytest.raises(DataError, match=r"only in train \['dog'\]"):
        load_dataset(str(tmp_path), (8, 8), 3)


def test_folder_split_and_missing_split(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("L", (5, 5), 3).save(tmp_path / "val" / cls / "x.png")
    assert find_split(tmp_path, "test") == tmp_path / "val"
    s = read_split(tmp_path / "val", (5, 5), channels=1)
    assert s.images.shape == (2, 5, 5, 1)
    with pytest.raises(DataError, match="no train split"):
        find_split(tmp_path, "train")


def test_split_val_is_seeded_and_stratified():
    from scbp_edge.data.digits import load_digits_split

    train, test = load_digits_split(0)
    rest, val = split_val(train, 0.1, 0)
    rest2, val2 = split_val(train, 0.1, 0)
    assert np.array_equal(val.labels, val2.labels) and len(rest) + len(val) == len(train)
    assert set(val.labels.tolist()) == set(range(10))


@pytest.mark.slow
def test_shared_cifar_tarballs(shared, cifar_test):
    assert len(cifar_test) == 10_000 and cifar_test.skipped == []
    assert cifar_test.classes[0] == "airplane" and np.bincount(cifar_test.labels).tolist() == [1000] * 10


def test_a_gzip_archive_damaged_in_the_middle_names_the_member_where_it_broke(tmp_path):
    # Issue 14, item 13: tarfile alone stops quietly at the damage and the split looks shorter.
    rng = np.random.default_rng(0)
    files = {}
    for i in range(300):  # noisy images do not compress away, so the damage lands inside image data
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        files[f"train/c{i % 3}/{i:03d}.png"] = buf.getvalue()
    _tar(tmp_path / "train.tar.gz", files)
    data = bytearray((tmp_path / "train.tar.gz").read_bytes())
    at = int(len(data) * 0.97)
    data[at : at + 256] = bytes(256)
    (tmp_path / "train.tar.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"archive '.*train\.tar\.gz' is damaged after member 'train/c\d/\d+\.png'"):
        read_split(tmp_path / "train.tar.gz", (8, 8))


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    from scbp_edge.serving.image import decode

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    out = decode(buf.getvalue(), (64, 64), 1)[:, :, 0]
    assert (out == 255).mean() < 0.01 and out.min() == 0 and 250 <= out.max() <= 255
    assert abs(int(out[32, 0]) - 128) <= 2  # the middle of the ramp stays mid-grey


def test_a_class_folder_without_images_is_named_not_silently_dropped(tmp_path):
    root = tmp_path / "train"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "1.jpg").write_bytes(_jpeg("red"))
    (root / "cat" / "2.jpg").write_bytes(_jpeg("blue"))
    s = read_split(root, (4, 4))
    assert s.classes == ["cat"] and any("dog" in n and "left out" in n for n in s.notes)


def test_an_empty_class_folder_in_one_split_is_named_as_empty(tmp_path):
    """Issue 57: it read 'only in train ['dog'], only in test []', as if the folder were missing."""
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat",))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), "red").save(tmp_path / split / cls / "x.png")
    (tmp_path / "test" / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) dog of '.*' hold no readable image in one split"):
        load_dataset(str(tmp_path), (8, 8), 3)


def test_an_archive_entry_that_leaves_its_folder_is_named_and_refused(tmp_path):
    """Issue 57: the refusal treated part of the hostile path as a class name."""
    _tar(tmp_path / "train.tar.gz", {"train/cat/1.jpg": _jpeg("red"), "../../etc/evil.jpg": _jpeg("blue")})
    with pytest.raises(DataError, match=r"holds member '\.\./\.\./etc/evil\.jpg', whose path leaves the archive"):
        read_split(tmp_path / "train.tar.gz", (8, 8))


@pytest.mark.slow  # over 4 s (issue 60: the not-slow inner loop)
def test_derive_with_data_names_the_images_it_leaves_out_as_build_does(tmp_path):
    """Issue 57: derive --data dropped unreadable images without a word; the README promised a warning."""
    from tests.helpers import cli

    for split in ("train", "test"):
        for cls, color in (("cat", "red"), ("dog", "blue")):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (32, 32), color).save(tmp_path / "d" / split / cls / f"{i}.png")
    (tmp_path / "d" / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    res = cli("derive", "--config", "0.5,0,0", "--data", str(tmp_path / "d"), "--calib-images", "4",
              "--num-classes", "2", "-o", str(tmp_path / "x.pt"))
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stderr.split())  # rich wraps at 80 columns
    assert "warning: 1 image(s) could not be read and are left out:" in text and "broken.png" in text, text


def test_exif_orientation_is_applied_by_the_one_decoder_of_training_and_serving():
    """Issue 57: an Orientation=6 JPEG (stored sideways, shown upright) was read sideways."""
    from scbp_edge.serving.image import decode

    stored = Image.new("RGB", (16, 8), "black")  # landscape as stored: the left half white
    stored.paste((255, 255, 255), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif, quality=95)
    arr = decode(buf.getvalue(), (16, 8), 3)  # (H, W): portrait, as displayed
    assert arr.shape == (16, 8, 3)
    assert arr[:8].mean() > 200 and arr[8:].mean() < 50  # the stored left half is the displayed top half
