"""Shared fixtures: real Fashion-MNIST slices, a tiny trained checkpoint, quiet CPU settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# Two cores: more intra-op threads only add contention. On a machine busy with other work,
# RESNET_PL_TEST_THREADS=1 avoids OpenMP threads waiting on each other.
torch.set_num_threads(int(os.environ.get("RESNET_PL_TEST_THREADS", min(2, os.cpu_count() or 1))))


def _require_fashion_mnist() -> Path:
    if (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        return FASHION_DIR
    message = (
        "real Fashion-MNIST not found in /usr/share/datasets/fashion-mnist "
        "(apt-get install dataset-fashion-mnist)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must run the real-data tests")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The folder holding the real Fashion-MNIST IDX files (skips off CI, fails on CI)."""
    return _require_fashion_mnist()


@pytest.fixture(scope="session")
def fashion_mnist_test(fashion_mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The real test split: uint8 images (10000, 1, 28, 28) and int64 labels."""
    from resnet_pl.data import load_idx_dataset

    return load_idx_dataset("fashion_mnist", "test", fashion_mnist_dir)


@pytest.fixture(scope="session")
def fashion_mnist_train(fashion_mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The real training split: uint8 images (60000, 1, 28, 28) and int64 labels."""
    from resnet_pl.data import load_idx_dataset

    return load_idx_dataset("fashion_mnist", "train", fashion_mnist_dir)
