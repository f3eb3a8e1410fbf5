"""The one image decoder: every path that turns an image file into pixels (training on an
image folder, ``resnet-pl test``, ``hub verify``, export verification, ``classify``) calls
:func:`load_image`, so a file reaches the model the same way in training and in deployment.

What it does to a file, in order:

1. Refuse decompression bombs (more pixels than ``max_pixels``, default Pillow's
   ``Image.MAX_IMAGE_PIXELS``) and decode fully, so a truncated file fails here, not later.
2. Apply the EXIF orientation (a phone photo stored sideways is seen upright).
3. Convert to the model's mode (:func:`convert_mode`): ``L`` for 1 channel, ``RGB`` for 3,
   ``RGBA`` for 4. 16-bit and 32-bit integer and float images are scaled to 8 bits (not
   clipped); palette images are expanded (their transparency becomes alpha); CMYK goes to RGB
   through its embedded ICC profile when it has one; colour to grayscale uses ITU-R 601 luma.
4. Alpha policy: for a 1- or 3-channel model, transparent pixels are composited on **black**
   (:data:`ALPHA_BACKGROUND`). Black is what "no light" means, so the result equals the
   colour premultiplied by its alpha (a fully transparent pixel contributes nothing, whatever
   colour happened to be stored under it), and it matches the black backgrounds of MNIST-style
   data. Dropping alpha instead (Pillow's plain ``convert("RGB")``) would expose those
   arbitrary stored colours.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from resnet_pl.data.errors import ImageLoadError

ALPHA_BACKGROUND = (0, 0, 0)
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Files picked up when a folder is searched (an explicitly named file is always tried).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float images as 8-bit grayscale, scaled rather than clipped (PIL's
    own ``convert("L")`` clips 16-bit values at 255, turning most pixels white). 16-bit data
    (``I;16*``, or ``I`` holding values above 255) is scaled by 255/65535; float data in [0, 1]
    by 255; anything else is rounded and clipped to [0, 255]."""
    arr = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and arr.max(initial=0) > 255):
        arr = arr.astype(np.float64) * (255.0 / 65535.0)
    elif image.mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
        arr = arr.astype(np.float64) * 255.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8), "L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK through its embedded ICC profile to sRGB when it has one (print profiles differ a
    lot from Pillow's naive formula); without a profile, Pillow's conversion."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
        except ImportError:  # Pillow built without littlecms
            return image.convert("RGB")
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
            pass  # a broken profile: fall back to the plain conversion below
    return image.convert("RGB")


def convert_mode(image: Image.Image, in_chans: int) -> Image.Image:
    """``image`` in the PIL mode a model with ``in_chans`` channels takes (``L``, ``RGB`` or
    ``RGBA``), following the module's rules: high bit depths scaled to 8 bits, palettes
    expanded, CMYK via ICC, alpha composited on :data:`ALPHA_BACKGROUND` unless the model takes
    4 channels."""
    if in_chans not in MODES:
        raise ValueError(f"models with in_chans={in_chans} are not supported (1, 3 or 4)")
    target = MODES[in_chans]
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "CMYK":
        image = _cmyk_to_rgb(image)
    elif image.mode not in ("1", "L", "RGB", *_ALPHA_MODES):
        image = image.convert("RGB")  # LAB, HSV, YCbCr, RGBX ... go through RGB
    if image.mode in _ALPHA_MODES and target != "RGBA":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == target else image.convert(target)


def load_image(
    path: str | Path | bytes | bytearray | memoryview,
    in_chans: int,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode ``path`` fully, apply its EXIF orientation and convert it to the model's mode
    (see the module docstring for every rule).

    Args:
        path: an image file (any format Pillow reads), or its encoded bytes (a file's content
            as stored in LitData shards, :mod:`resnet_pl.data.shards`): the same rules apply.
        in_chans: the model's input channels (1 -> grayscale, 3 -> RGB, 4 -> RGBA).
        max_pixels: refuse images with more pixels than this (decompression-bomb guard);
            default Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 M). Exceeding it is an error
            here, not Pillow's mere warning.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated, too large or in a
            mode that cannot be converted; the message is one line.
    """
    if isinstance(path, bytes | bytearray | memoryview):
        return decode_image(bytes(path), in_chans, max_pixels)
    path = Path(path)
    try:
        empty = path.stat().st_size == 0
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except OSError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageLoadError(f"cannot decode image: {reason}") from None
    if empty:
        raise ImageLoadError("empty file")
    return _decode(path, in_chans, max_pixels)


def decode_image(data: bytes, in_chans: int, max_pixels: int | None = None) -> Image.Image:
    """:func:`load_image` for an image held in memory (an HTTP upload): the same decoder,
    the same rules and the same one-line :class:`ImageLoadError`; nothing is written to disk.

    Not thread-safe (Pillow's pixel limit is a global while an image is opened): decode in
    one thread per process, as the server's inference workers do.
    """
    if not data:
        raise ImageLoadError("empty file")
    return _decode(io.BytesIO(data), in_chans, max_pixels)


def _decode(source: Path | io.BytesIO, in_chans: int, max_pixels: int | None) -> Image.Image:
    """The decoder behind :func:`load_image` and :func:`decode_image`."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # Above the limit Pillow only warns; above twice the limit it raises. Both refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = limit
            try:
                with Image.open(source) as opened:
                    if limit is not None and opened.width * opened.height > limit:
                        raise Image.DecompressionBombError(f"{opened.width}x{opened.height}")
                    opened.load()
                    image = ImageOps.exif_transpose(opened)
                    if image is opened:
                        image = opened.copy()
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
        return convert_mode(image, in_chans)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(
            f"refused as a possible decompression bomb (more than {limit} pixels): {e}"
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError("not a readable image (unknown or corrupt format)") from None
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageLoadError(f"cannot decode image: {reason}") from None
