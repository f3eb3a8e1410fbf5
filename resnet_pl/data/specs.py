"""What resnet-pl knows about each named dataset before reading it, and the normalisation
statistics every other module takes from here (they are written nowhere else)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetSpec:
    """What a data module or an evaluation needs to know about a named dataset."""

    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool  # flipping keeps the label (not for digits)
    class_names: tuple[str, ...]


DIGITS = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(10, 1, 28, (0.1307,), (0.3081,), False, DIGITS),
    "fashion_mnist": DatasetSpec(10, 1, 28, (0.2860,), (0.3530,), True, FASHION_MNIST_CLASSES),
    "cifar10": DatasetSpec(
        10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, CIFAR10_CLASSES
    ),
    "cifar100": DatasetSpec(
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        True,
        tuple(f"class_{i}" for i in range(100)),
    ),
    "svhn": DatasetSpec(
        10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False, DIGITS
    ),
    "fake": DatasetSpec(10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True, DIGITS),
}
DATASETS = (*SPECS, "imagefolder")

SMALL_IMAGE_MAX = 64  # inputs up to this side default to crop_pct 1.0


def default_norm(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for images with no dataset statistics: ImageNet's for RGB, 0.5/0.5 per
    channel otherwise (maps [0, 1] to [-1, 1])."""
    if in_chans == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * in_chans, (0.5,) * in_chans


def default_crop_pct(height: int, width: int | None = None) -> float:
    """1.0 for small inputs (<= 64 px: CIFAR/MNIST-style models see whole images), 0.875 for
    larger ones (the ImageNet convention: resize to 256, centre-crop 224)."""
    return 1.0 if max(height, width or height) <= SMALL_IMAGE_MAX else 0.875


def recorded_preprocessing(
    hparams: Mapping[str, Any], in_chans: int, default_side: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, tuple[int, int, int]]:
    """The ``mean``, ``std`` and ``input_size`` a trained checkpoint's network expects, from its
    hyperparameters: what training recorded, else its dataset's spec, else ``None`` for the
    statistics and ``(in_chans, default_side, default_side)`` for the size. Callers decide
    what missing statistics mean (publishing and distillation both refuse, each naming its
    own fix)."""
    dataset = hparams.get("dataset")
    spec = SPECS.get(str(dataset)) if dataset else None
    mean = hparams.get("mean") or (spec.mean if spec else None)
    std = hparams.get("std") or (spec.std if spec else None)
    if hparams.get("input_size"):
        c, h, w = (int(v) for v in hparams["input_size"])
    else:
        side = spec.image_size if spec else default_side
        c, h, w = in_chans, side, side
    return (
        None if mean is None else tuple(float(v) for v in mean),
        None if std is None else tuple(float(v) for v in std),
        (c, h, w),
    )
