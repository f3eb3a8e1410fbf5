"""Real images for verifying exports and for the README walk-through, by dataset name. The files
are read by :mod:`resnet_pl.data.datasets` (the one Fashion-MNIST reader).

This module deliberately does not import :mod:`resnet_pl.lightning` (and so not Lightning):
export and classify must stay usable in a slim inference environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resnet_pl.data import FASHION_MNIST_CLASSES, read_idx
from resnet_pl.data.datasets import DEBIAN_FASHION_MNIST, idx_available
from resnet_pl.data.datasets import load_fashion_mnist as _load_fashion_mnist
from resnet_pl.errors import DatasetUnavailableError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DatasetUnavailableError",
    "dataset_available",
    "dataset_names",
    "dataset_of",
    "load_dataset",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_DIR = DEBIAN_FASHION_MNIST


def fashion_mnist_available(data_dir: Path | None = None) -> bool:
    """Whether :func:`load_fashion_mnist` can find both splits."""
    return idx_available("fashion_mnist", data_dir)


def load_fashion_mnist(
    split: str = "test", n: int | None = None, start: int = 0, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of a Fashion-MNIST split, starting
    at index ``start``: the one reader, :func:`resnet_pl.data.datasets.load_fashion_mnist`."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_fashion_mnist(split, n, start, data_dir)


# Real labelled images that export verification, int8 calibration and the deploy benchmark can
# ask for by name: name -> (loader(split, n) -> (uint8 images, int64 labels), availability).
# The exporter knows no dataset itself; it asks here for the one a model was trained on.
_NAMED: dict[str, tuple[Callable[[str, int | None], tuple[np.ndarray, np.ndarray]],
                        Callable[[], bool]]] = {
    "fashion_mnist": (lambda split, n: load_fashion_mnist(split, n), fashion_mnist_available),
}  # fmt: skip


def dataset_names() -> list[str]:
    """Names :func:`load_dataset` accepts."""
    return sorted(_NAMED)


def dataset_available(name: str) -> bool:
    """Whether the named dataset's files are on this machine."""
    return name in _NAMED and _NAMED[name][1]()


def load_dataset(name: str, split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` uint8 images and labels of a named dataset's ``split``."""
    if name not in _NAMED:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return _NAMED[name][0](split, n)


def dataset_of(cfg: Mapping[str, Any]) -> str | None:
    """The named dataset a model was trained on, from its config (``dataset``, or the weights
    tag in ``source_weights`` such as ``resnet20.fashion_mnist``), if it is one of ours."""
    if cfg.get("dataset") in _NAMED:
        return str(cfg["dataset"])
    source = str(cfg.get("source_weights") or "")
    return next((name for name in _NAMED if name in source), None)
