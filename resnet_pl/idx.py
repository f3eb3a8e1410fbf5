"""MNIST's IDX file format, read with numpy alone.

Kept free of Lightning so the training data module and the slim export/classify path share one
reader.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from resnet_pl.errors import ResNetPLError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class IdxFormatError(ResNetPLError, ValueError):
    """A file that is not a complete unsigned-byte IDX file; the message names it."""


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            data: bytes = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise IdxFormatError(f"{path} is a corrupt or truncated gzip file ({err})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise IdxFormatError(f"{path} is not an unsigned-byte IDX file (corrupt or wrong file)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise IdxFormatError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise IdxFormatError(f"{path} is truncated: expected {int(np.prod(dims))} values")
    return array.reshape(dims)
