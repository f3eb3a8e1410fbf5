"""Measuring a model's accuracy the way its weights record says it should be measured: on the
named dataset split, with the weights' own preprocessing (``pretrained_cfg``), in fp32, eval mode.

Used by ``resnet-pl hub publish`` (to record metrics), ``resnet-pl hub verify`` (to re-measure
them) and the tests. Small datasets come from :mod:`resnet_pl.data.datasets` (Fashion-MNIST
from ``/usr/share/datasets/fashion-mnist``) or torchvision's folders; ImageNet
needs a validation folder laid out as one sub-folder per class (synset names sort into
torchvision's class order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet_pl.data.datasets import IDX_DATASETS, TORCHVISION_DATASETS
from resnet_pl.errors import DatasetUnavailableError
from resnet_pl.models.tta import with_tta

IMAGENET_NAMES = ("imagenet-1k", "imagenet")
# Re-measuring the same images can differ only by floating-point noise (other kernels, thread
# counts): a few images at most. Third-party published numbers used another pipeline.
TOLERANCE_SAME_IMAGES = 0.1  # percentage points
TOLERANCE_PUBLISHED = 0.3
SUBSET_SIGMAS = 3.0


def load_eval_images(
    dataset: str, split: str = "test", data_dir: Path | None = None
) -> tuple[Tensor, Tensor]:
    """uint8 images ``(N, C, H, W)`` and labels of a small dataset's evaluation split."""
    from resnet_pl.data.datasets import load_idx_dataset, load_torchvision_dataset

    if dataset in IDX_DATASETS:
        return load_idx_dataset(dataset, split, data_dir)
    if dataset in TORCHVISION_DATASETS:
        return load_torchvision_dataset(dataset, split, data_dir)
    raise DatasetUnavailableError(f"no loader for dataset {dataset!r} split {split!r}")


@torch.no_grad()
def _logits(model: nn.Module, batches: Any) -> tuple[Tensor, Tensor]:
    """Logits and labels over ``(x, y)`` batches, in eval mode (the model's mode restored)."""
    outs: list[Tensor] = []
    labels: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            outs.append(model(x.float()).float())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(outs), torch.cat(labels)


def accuracy_counts(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image top-1 and top-5 hits (bool tensors)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(dim=1)
    return hit1, hit5


def summarise(hit1: Tensor, hit5: Tensor, slices: Sequence[int] = ()) -> dict[str, Any]:
    """Percentages over all images, plus ``first_<n>`` for each slice size that fits."""
    n = int(hit1.numel())
    out: dict[str, Any] = {
        "top1": round(100.0 * hit1.float().mean().item(), 4),
        "top5": round(100.0 * hit5.float().mean().item(), 4),
        "n": n,
    }
    for size in slices:
        if 0 < size < n:
            out[f"first_{size}"] = {
                "top1": round(100.0 * hit1[:size].float().mean().item(), 4),
                "top5": round(100.0 * hit5[:size].float().mean().item(), 4),
                "n": size,
            }
    return out


def small_logits(
    model: nn.Module,
    cfg: Mapping[str, Any],
    dataset: str,
    *,
    split: str = "test",
    limit: int | None = None,
    data_dir: Path | None = None,
    batch_size: int = 500,
) -> tuple[Tensor, Tensor]:
    """Logits (with ``cfg``'s test-time augmentation, if any) and labels of the first ``limit``
    images of a small dataset, preprocessed by
    :func:`resnet_pl.data.transforms.preprocess_uint8` with ``cfg``."""
    from resnet_pl.data.transforms import preprocess_uint8

    images, labels = load_eval_images(dataset, split, data_dir)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    batches = (
        (preprocess_uint8(images[i : i + batch_size], cfg), labels[i : i + batch_size])
        for i in range(0, len(images), batch_size)
    )
    return _logits(with_tta(model, cfg.get("tta")), batches)


def measure_small(
    model: nn.Module,
    cfg: Mapping[str, Any],
    dataset: str,
    *,
    split: str = "test",
    limit: int | None = None,
    data_dir: Path | None = None,
    batch_size: int = 500,
    slices: Sequence[int] = (),
) -> dict[str, Any]:
    """Top-1/top-5 (%) of ``model`` on the first ``limit`` images (all if None) of a small
    dataset, preprocessed by :func:`resnet_pl.data.transforms.preprocess_uint8` with ``cfg``."""
    logits, targets = small_logits(
        model, cfg, dataset, split=split, limit=limit, data_dir=data_dir, batch_size=batch_size
    )
    hit1, hit5 = accuracy_counts(logits, targets)
    return {
        **summarise(hit1, hit5, slices),
        "dataset": dataset,
        "split": split,
        "preprocessing": "pretrained_cfg eval transform",
        "precision": "fp32",
    }


def imagenet_samples(data_dir: Path, limit: int | None) -> tuple[list[Path], list[int], int]:
    """Image paths and labels of an ImageNet-style validation folder (one sub-folder per class,
    sorted). With ``limit``, images evenly spaced over the sorted list (every class sampled)."""
    classes = sorted(p for p in data_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetUnavailableError(
            f"{data_dir} has no class sub-folders; pass the ImageNet validation folder laid out "
            f"as val/<synset>/<image>.JPEG"
        )
    exts = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}
    samples = [
        (path, label)
        for label, folder in enumerate(classes)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in exts
    ]
    if limit is not None and limit < len(samples):
        step = len(samples) / limit
        samples = [samples[int(i * step)] for i in range(limit)]
    return [p for p, _ in samples], [lbl for _, lbl in samples], len(classes)


def measure_folder(
    model: nn.Module,
    cfg: Mapping[str, Any],
    data_dir: Path,
    *,
    limit: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Top-1/top-5 (%) on an ImageNet-style validation folder, each image read with
    :func:`resnet_pl.data.decode.load_image` and the cfg's eval transform."""
    from resnet_pl.data import eval_transform, load_image

    paths, labels, n_classes = imagenet_samples(data_dir, limit)
    expected = int(cfg.get("num_classes") or n_classes)
    if n_classes != expected:
        raise DatasetUnavailableError(
            f"{data_dir} has {n_classes} class folders but the weights have {expected} classes"
        )
    transform = eval_transform(cfg)
    chans = int(cfg["input_size"][0])

    def batches() -> Any:
        for i in range(0, len(paths), batch_size):
            x = torch.stack([transform(load_image(p, chans)) for p in paths[i : i + batch_size]])
            yield x, torch.tensor(labels[i : i + batch_size])

    logits, targets = _logits(with_tta(model, cfg.get("tta")), batches())
    hit1, hit5 = accuracy_counts(logits, targets)
    return {
        **summarise(hit1, hit5),
        "dataset": "imagenet-1k",
        "split": "val",
        "preprocessing": "pretrained_cfg eval transform",
        "precision": "fp32",
    }


def tolerance(recorded: Mapping[str, Any], measured_n: int, *, same_images: bool) -> float:
    """Allowed |measured - recorded| top-1 difference in percentage points.

    Same images as recorded: ``TOLERANCE_SAME_IMAGES`` (0.1 pp; float noise only), or
    ``TOLERANCE_PUBLISHED`` (0.3 pp) for numbers published by a third party with its own
    pipeline. A subset of the recorded images adds 3 binomial standard errors of the subset.
    """
    third_party = "published" in str(recorded.get("source", ""))
    base = TOLERANCE_PUBLISHED if third_party else TOLERANCE_SAME_IMAGES
    if same_images:
        return base
    p = float(recorded["top1"]) / 100.0
    se = math.sqrt(max(p * (1 - p), 1e-4) / max(measured_n, 1)) * 100.0
    return base + SUBSET_SIGMAS * se
