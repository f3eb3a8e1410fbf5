"""Real images for verifying exports and for the README walk-through: Fashion-MNIST read straight
from its IDX files.

This module deliberately does not import :mod:`resnet_pl.lightning` (and so not Lightning):
export and classify must stay usable in a slim inference environment.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetUnavailableError(FileNotFoundError):
    """The dataset's files are not on this machine; the message names the folders tried."""


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data: bytes = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values")
    return array.reshape(dims)


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
