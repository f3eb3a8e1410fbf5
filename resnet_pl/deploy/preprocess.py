"""Evaluation preprocessing, in one place, so that PyTorch inference, ONNX Runtime inference,
export verification and the weights hub turn an image into exactly the same tensor.

The config is a plain dict (a model's ``pretrained_cfg``, a checkpoint's hyperparameters or the
metadata of an exported ONNX file all fit), with keys:

- ``input_size``: ``(C, H, W)`` the network takes;
- ``mean``, ``std``: per-channel normalisation (defaults: ImageNet statistics for 3 channels,
  0.5/0.5 otherwise);
- ``interpolation``: ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"`` or ``"nearest_exact"``;
- ``crop_pct``: fraction of the resized image kept by the centre crop. Default 1.0 for small
  inputs (<= 64 px: CIFAR/MNIST-style models see whole images) and 0.875 for larger ones (the
  ImageNet convention: resize to 256, crop 224).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode, v2

from resnet_pl.errors import ResNetPLError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_IMAGE_MAX = 64  # inputs up to this side default to crop_pct 1.0
_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "nearest_exact": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Files picked up when a folder is given (an explicitly named file is always tried).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


class ImageLoadError(ResNetPLError, ValueError):
    """A file that cannot be used as an image; the message says why in one line."""


def resolve_data_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every preprocessing key filled in and checked (see the module docstring).

    Raises:
        ValueError: a missing ``input_size`` or inconsistent values, naming the key.
    """
    if cfg.get("input_size") is None:
        raise ValueError("the config has no input_size (C, H, W); pass one, e.g. (3, 32, 32)")
    size = tuple(int(v) for v in cfg["input_size"])
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (C, H, W) with positive values, got {size}")
    chans, height, width = size
    mean = cfg.get("mean") or (IMAGENET_MEAN if chans == 3 else (0.5,) * chans)
    std = cfg.get("std") or (IMAGENET_STD if chans == 3 else (0.5,) * chans)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != chans or len(std) != chans:
        raise ValueError(f"mean {mean} and std {std} need one value per input channel ({chans})")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {std}")
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}"
        )
    default_crop = 1.0 if max(height, width) <= SMALL_IMAGE_MAX else 0.875
    crop_pct = float(cfg.get("crop_pct") or default_crop)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return {
        **dict(cfg),
        "input_size": size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
    }


def eval_transform(cfg: Mapping[str, Any]) -> v2.Compose:
    """The evaluation transform for ``cfg``: resize (shorter side to ``size / crop_pct``),
    centre-crop to ``(H, W)``, scale to [0, 1], normalise.

    Accepts a PIL image already in the model's mode (see :func:`convert_mode`), or a uint8
    tensor ``(C, H, W)`` / ``(N, C, H, W)``. Resizing always happens on tensors (antialiased),
    so a PIL image and the same pixels as a tensor give the same result.
    """
    c = resolve_data_cfg(cfg)
    _, height, width = c["input_size"]
    interpolation = _INTERPOLATIONS[c["interpolation"]]
    antialias = c["interpolation"] in ("bilinear", "bicubic")
    resize: int | tuple[int, int]
    if height == width:
        resize = math.floor(height / c["crop_pct"])
    else:
        resize = (math.floor(height / c["crop_pct"]), math.floor(width / c["crop_pct"]))
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, interpolation=interpolation, antialias=antialias),
            v2.CenterCrop((height, width)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(c["mean"]), std=list(c["std"])),
        ]
    )


# A name the weights hub can share: ``transforms(cfg)`` reads naturally at a call site.
transforms = eval_transform


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float images as 8-bit grayscale, scaled rather than clipped (PIL's
    own ``convert("L")`` clips 16-bit values at 255, turning most pixels white)."""
    arr = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and arr.max(initial=0) > 255):
        arr = arr.astype(np.float64) * (255.0 / 65535.0)
    elif image.mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
        arr = arr.astype(np.float64) * 255.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8), "L")


def convert_mode(image: Image.Image, in_chans: int) -> Image.Image:
    """``image`` in the PIL mode a model with ``in_chans`` channels takes: ``"L"`` for 1,
    ``"RGB"`` for 3, ``"RGBA"`` for 4. Handles palette (with transparency), 16-bit, CMYK, LA,
    1-bit and float images; alpha is dropped, not composited."""
    if in_chans not in _MODES:
        raise ValueError(f"models with in_chans={in_chans} are not supported (1, 3 or 4)")
    target = _MODES[in_chans]
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL asks for this before other conversions
    if image.mode == target:
        return image
    if image.mode not in ("L", "RGB", "RGBA", "P", "1", "LA", "CMYK", "YCbCr", "RGBX", "La"):
        image = image.convert("RGB")  # LAB, HSV ... go through RGB first
    return image.convert(target)


def load_image(path: str | Path, in_chans: int, max_pixels: int | None = None) -> Image.Image:
    """Open ``path`` as an image in the model's mode, EXIF orientation applied.

    Args:
        path: an image file (any format PIL reads).
        in_chans: the model's input channels (1 -> grayscale, 3 -> RGB).
        max_pixels: refuse images with more pixels than this (decompression-bomb guard);
            default PIL's ``Image.MAX_IMAGE_PIXELS`` (about 89 M). Exceeding it is an error here,
            not PIL's mere warning.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated, too large or in a
            mode that cannot be converted; the message is one line.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError("empty file")
        with warnings.catch_warnings():
            # Above the limit PIL only warns; above twice the limit it raises. Both are refusals.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = limit
            try:
                with Image.open(path) as opened:
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


def preprocess_images(images: Sequence[Image.Image], cfg: Mapping[str, Any]) -> torch.Tensor:
    """A batch ``(N, C, H, W)`` float32 from PIL images already in the model's mode."""
    transform = eval_transform(cfg)
    return torch.stack([transform(im) for im in images])


def preprocess_uint8(images: np.ndarray | torch.Tensor, cfg: Mapping[str, Any]) -> torch.Tensor:
    """A batch ``(N, C, H, W)`` float32 from uint8 images ``(N, H, W)`` or ``(N, C, H, W)``;
    grayscale is repeated to the model's channel count."""
    x = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    chans = int(resolve_data_cfg(cfg)["input_size"][0])
    if x.shape[1] == 1 and chans > 1:
        x = x.expand(-1, chans, -1, -1)
    out = eval_transform(cfg)(x)
    return torch.as_tensor(out).contiguous()
