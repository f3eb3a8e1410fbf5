"""The one evaluation transform, shared by training's validation/test/predict data, ``hub
verify``, export verification and ``classify``.

The config is a plain dict (a model's ``pretrained_cfg``, a checkpoint's hyperparameters or the
metadata of an exported ONNX file all fit), with keys:

- ``input_size``: ``(C, H, W)`` the network takes;
- ``mean``, ``std``: per-channel normalisation (default :func:`~resnet_pl.data.specs.default_norm`:
  ImageNet statistics for 3 channels, 0.5/0.5 otherwise);
- ``interpolation``: ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"`` or ``"nearest_exact"``;
- ``crop_pct``: fraction of the resized image kept by the centre crop (default
  :func:`~resnet_pl.data.specs.default_crop_pct`: 1.0 up to 64 px, 0.875 above).

The rule (timm's): resize the shorter side to ``floor(size / crop_pct)`` (antialiased, on uint8
tensors), centre-crop ``(H, W)``, scale to [0, 1], normalise. It is split in two so that a data
loader can do the geometry in its workers and the normalisation on the device
(:func:`eval_geometry`, :func:`normalize`); :func:`eval_transform` chains the same two.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2

from resnet_pl.data.specs import default_crop_pct, default_norm
from resnet_pl.limits import check_image_geometry, printable

INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "nearest_exact": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def resolve_data_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every preprocessing key filled in and checked (see the module docstring).

    Raises:
        ValueError: a missing ``input_size`` or inconsistent values, naming the key.
    """
    if cfg.get("input_size") is None:
        raise ValueError("the config has no input_size (C, H, W); pass one, e.g. (3, 32, 32)")
    try:
        size = tuple(int(v) for v in cfg["input_size"])
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"input_size must be (C, H, W) integers, got {printable(cfg['input_size'])}"
        ) from None
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (C, H, W) with positive values, got {size}")
    # The one bound on sizes (resnet_pl.limits), before anything is sized from these values.
    check_image_geometry(size, "the config")
    chans, height, width = size
    default_mean, default_std = default_norm(chans)
    try:
        mean = tuple(float(v) for v in (cfg.get("mean") or default_mean))
        std = tuple(float(v) for v in (cfg.get("std") or default_std))
    except (TypeError, ValueError):
        raise ValueError(
            f"mean and std must be lists of numbers, got {printable(cfg.get('mean'))}, "
            f"{printable(cfg.get('std'))}"
        ) from None
    if len(mean) != chans or len(std) != chans:
        raise ValueError(f"mean {mean} and std {std} need one value per input channel ({chans})")
    if not all(math.isfinite(v) for v in (*mean, *std)):
        # NaN or infinite statistics would turn every output into NaN: refused, not used.
        raise ValueError(f"mean {mean} and std {std} must be finite numbers")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {std}")
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
        )
    try:
        crop_pct = float(cfg.get("crop_pct") or default_crop_pct(height, width))
    except (TypeError, ValueError):
        raise ValueError(f"crop_pct must be a number, got {cfg.get('crop_pct')!r}") from None
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    # ... and no image is resized beyond it before the centre crop.
    check_image_geometry(size, "the config", crop_pct=crop_pct)
    return {
        **dict(cfg),
        "input_size": size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
    }


def resize_size(height: int, width: int, crop_pct: float) -> int | tuple[int, int]:
    """What the shorter side (square inputs) or both sides are resized to before the centre
    crop: ``floor(size / crop_pct)`` (224 at 0.875 -> 256, as torchvision and timm)."""
    if height == width:
        return math.floor(height / crop_pct)
    return (math.floor(height / crop_pct), math.floor(width / crop_pct))


def eval_geometry(cfg: Mapping[str, Any]) -> v2.Compose:
    """uint8 pixels in, uint8 pixels of the model's size out: a PIL image already in the
    model's mode (see :func:`resnet_pl.data.decode.convert_mode`) or a uint8 tensor
    ``(C, H, W)`` / ``(N, C, H, W)``. Resizing always happens on tensors (antialiased for
    bilinear/bicubic), so a PIL image and the same pixels as a tensor give the same result."""
    c = resolve_data_cfg(cfg)
    _, height, width = c["input_size"]
    antialias = c["interpolation"] in ("bilinear", "bicubic")
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(
                resize_size(height, width, c["crop_pct"]),
                interpolation=INTERPOLATIONS[c["interpolation"]],
                antialias=antialias,
            ),
            v2.CenterCrop((height, width)),
        ]
    )


def train_geometry(image_size: int, hflip: bool = True) -> v2.Compose:
    """The per-image training geometry of decoded data (image folders and LitData shards):
    a random resized crop to ``image_size`` and (``hflip``) a random horizontal flip, uint8 in
    and out. It draws from torch's global generator (the streaming path seeds it per sample)."""
    steps: list[Any] = [v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


@functools.lru_cache(maxsize=32)
def _norm_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(C, 1, 1)`` float32 mean and std on ``device``, cached: the per-batch path on a GPU
    neither rebuilds them nor copies them to the device again."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return m, s


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``(C, H, W)`` or ``(N, C, H, W)`` -> float32 ``(x / 255 - mean) / std``, with the
    same operations in the same order as torchvision's ``ToDtype(scale=True)`` + ``Normalize``
    (so it is bit-identical to them, on any device)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {x.dtype}")
    m, s = _norm_tensors(tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device)
    return x.as_subclass(Tensor).to(torch.float32).mul_(1.0 / 255).sub_(m).div_(s)


class Normalize:
    """:func:`normalize` as a transform (the last step of :func:`eval_transform`)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: Tensor) -> Tensor:
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={list(self.mean)}, std={list(self.std)})"


def eval_transform(cfg: Mapping[str, Any]) -> v2.Compose:
    """The evaluation transform for ``cfg``: :func:`eval_geometry` then :func:`normalize`.
    Accepts what :func:`eval_geometry` accepts; returns float32 ``(C, H, W)`` (or a batch)."""
    c = resolve_data_cfg(cfg)
    return v2.Compose([*eval_geometry(c).transforms, Normalize(c["mean"], c["std"])])


def preprocess_images(images: Sequence[Image.Image], cfg: Mapping[str, Any]) -> Tensor:
    """A batch ``(N, C, H, W)`` float32 from PIL images already in the model's mode."""
    transform = eval_transform(cfg)
    return torch.stack([transform(im) for im in images])


def preprocess_uint8(images: np.ndarray | Tensor, cfg: Mapping[str, Any]) -> Tensor:
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
    return eval_transform(cfg)(x).contiguous()
