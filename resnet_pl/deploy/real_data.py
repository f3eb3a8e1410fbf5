"""Real images for export verification and int8 calibration, from whatever the caller names:
a dataset name (see :func:`resnet_pl.deploy.datasets.dataset_names`), a folder of image files,
uint8 images, preprocessed float tensors, or an ``(images, labels)`` pair. Everything comes back
preprocessed with the model's own config, so the exporter never needs to know about datasets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from resnet_pl.data import preprocess_uint8
from resnet_pl.deploy.datasets import dataset_available, dataset_names, dataset_of, load_dataset
from resnet_pl.deploy.export_report import ExportOptionError

DataLike = Tensor | np.ndarray | tuple[Any, Any] | Sequence[Tensor] | str


@dataclass
class RealData:
    """Preprocessed images ``x`` (N, C, H, W), labels if known, and where they came from."""

    x: Tensor
    labels: Tensor | None
    description: str


def as_real_data(data: DataLike, cfg: Mapping[str, Any], split: str, n: int, what: str) -> RealData:
    """Normalise user data: a dataset name (``"fashion_mnist"``), a folder of images, a
    preprocessed float tensor ``(N, C, H, W)``, uint8 images (preprocessed with the model's
    cfg), a list of batches, or an ``(images, labels)`` pair. ``what`` names the argument in
    error messages."""
    labels: Any = None
    if isinstance(data, str | Path) and Path(data).is_dir():
        return _images_from_dir(Path(data), cfg, n, what)
    if isinstance(data, str):
        if data not in dataset_names():
            raise ExportOptionError(
                f"{what}={data!r} is neither a dataset name ({', '.join(dataset_names())}) nor "
                "a folder of images; pass one of those or a tensor of preprocessed images"
            )
        images, labels = load_dataset(data, split, n)
        description = f"{data} {split}[:{len(images)}]"
        return RealData(preprocess_uint8(images, cfg), torch.from_numpy(labels), description)
    if isinstance(data, tuple) and len(data) == 2:
        data, labels = data
    x: Any
    if isinstance(data, list | tuple):
        x = torch.cat([torch.as_tensor(np.asarray(b)) for b in data])
    else:
        x = torch.as_tensor(np.asarray(data)) if isinstance(data, np.ndarray) else data
    if not isinstance(x, Tensor):
        raise ExportOptionError(f"{what} must be a tensor, an array or a list of batches")
    if x.dtype == torch.uint8:
        x = preprocess_uint8(x, cfg)
    if x.dim() != 4:
        raise ExportOptionError(f"{what} must be a batch (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.float().cpu()[:n]
    y = torch.as_tensor(np.asarray(labels)).long()[:n] if labels is not None else None
    return RealData(x, y, f"{what} ({len(x)} images)")


def _images_from_dir(folder: Path, cfg: Mapping[str, Any], n: int, what: str) -> RealData:
    """Up to ``n`` images found under ``folder`` (sorted, recursive), preprocessed with the
    model's cfg; unreadable files are skipped."""
    from resnet_pl.data import (
        IMAGE_SUFFIXES,
        ImageLoadError,
        eval_transform,
        load_image,
    )

    chans = int(cfg["input_size"][0])
    transform = eval_transform(cfg)
    images = []
    for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            images.append(transform(load_image(f, chans)))
        except ImageLoadError:
            continue
        if len(images) >= n:
            break
    if not images:
        raise ExportOptionError(f"{what}: no readable images under {folder}")
    return RealData(torch.stack(images), None, f"{len(images)} images from {folder}")


def auto_real_data(cfg: Mapping[str, Any], n: int) -> RealData | None:
    """The test split of the dataset the model was trained on, when that dataset is one of
    ours and its files are on this machine; else ``None``."""
    name = dataset_of(cfg)
    if name is not None and dataset_available(name):
        return as_real_data(name, cfg, "test", n, "verify_data")
    return None
