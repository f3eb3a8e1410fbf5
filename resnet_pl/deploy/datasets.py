"""Real images for verifying exports and for the README walk-through: Fashion-MNIST read straight
from its IDX files.

This module deliberately does not import :mod:`resnet_pl.lightning` (and so not Lightning):
export and classify must stay usable in a slim inference environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_pl.errors import DatasetUnavailableError
from resnet_pl.idx import FASHION_MNIST_CLASSES, read_idx

__all__ = ["FASHION_MNIST_CLASSES", "DatasetUnavailableError", "load_fashion_mnist", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def fashion_mnist_available(data_dir: Path | None = None) -> bool:
    """Whether :func:`load_fashion_mnist` can find both splits."""
    try:
        for split in _FILES:
            _find(split, data_dir)
    except DatasetUnavailableError:
        return False
    return True


def _find(split: str, data_dir: Path | None) -> tuple[Path, Path]:
    folders = [p for p in (data_dir, FASHION_MNIST_DIR) if p is not None]
    images_stem, labels_stem = _FILES[split]
    for folder in folders:
        for suffix in (".gz", ""):
            images, labels = folder / (images_stem + suffix), folder / (labels_stem + suffix)
            if images.is_file() and labels.is_file():
                return images, labels
    raise DatasetUnavailableError(
        f"Fashion-MNIST {split} files ({images_stem}[.gz], {labels_stem}[.gz]) not found in "
        f"{', '.join(str(f) for f in folders)}; install the Debian package that provides "
        f"{FASHION_MNIST_DIR} or pass the folder holding the IDX files"
    )


def load_fashion_mnist(
    split: str = "test", n: int | None = None, start: int = 0, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of a Fashion-MNIST split, starting
    at index ``start`` (the files are in a fixed order, so a slice is reproducible)."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images_path, labels_path = _find(split, data_dir)
    images, labels = read_idx(images_path), read_idx(labels_path)
    end = len(images) if n is None else min(len(images), start + n)
    return images[start:end].copy(), labels[start:end].astype(np.int64)
