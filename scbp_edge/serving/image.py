"""Image decoding shared by training data and the served model, so both see the same pixels.

Python 3.6+, numpy and Pillow only (copied into images).  The pixel count is
checked from the header before anything is decoded, so a small file that
expands to gigabytes (a decompression bomb) is refused, not decoded.
"""

import io

import numpy as np

MAX_PIXELS = 4096 * 4096  # per image; far above any camera frame a robot classifies, far below a bomb
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}


class ImageError(ValueError):
    """The bytes are not a usable image (undecodable, or too many pixels)."""


def decode(blob, size, channels, max_pixels=MAX_PIXELS):
    """``blob`` decoded to uint8 (H, W, C) at ``size`` = (H, W) with ``channels`` 1 (grey) or 3 (RGB).

    16-bit greyscale is scaled to 8 bits (never clipped); larger-than-``max_pixels``
    images raise :class:`ImageError` before decoding.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the pixel bound below is checked and named
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ImageError("not a decodable image (%s)" % type(exc).__name__) from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError("image of %dx%d pixels exceeds the limit of %d pixels" % (w, h, max_pixels))
        try:
            im.load()
            im = _upright(im)
            if im.mode in _WIDE_MODES:
                arr = np.asarray(im, dtype=np.float64)
                top = _WIDE_MODES[im.mode] if arr.max() <= 65535 else float(arr.max())
                im = Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), mode="L")
            im = im.convert("RGB" if channels == 3 else "L")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
            raise ImageError("not a decodable image (%s)" % type(exc).__name__) from None
    return arr if arr.ndim == 3 else arr[:, :, None]


def _upright(im):
    """``im`` turned as its EXIF Orientation says (a phone's portrait JPEG is stored sideways), else itself.

    Pillow before 6.0 (old device images) has no ``exif_transpose``: the pixels are then used as stored.
    """
    from PIL import ImageOps

    transpose = getattr(ImageOps, "exif_transpose", None)
    return transpose(im) if transpose is not None else im
