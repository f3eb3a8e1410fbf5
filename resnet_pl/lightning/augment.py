"""Batch-level augmentation of uint8 image tensors, on whatever device the batch is on.

Per-sample randomness (each image gets its own crop offset, flip and erased box) without a
Python loop over images: offsets become index grids and one gather does the crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2.functional import resize

from resnet_pl.data.transforms import normalize


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by ``padding`` and crop back to the input size at a random offset per image."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # N,1,H,1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # N,1,1,W
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erase(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Random erasing (Zhong et al. 2017, https://arxiv.org/abs/1708.04896): with probability
    ``p`` per image, set one rectangle of 2-40% of the area (aspect 0.3-3.3) to zero, which is
    the dataset mean after normalisation."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(0.02, 0.4, generator=generator) * h * w
    log_ratio = torch.empty(n, device=dev).uniform_(-1.2, 1.2, generator=generator)
    eh = (area * log_ratio.exp()).sqrt().clamp(1, h).long()
    ew = (area / log_ratio.exp()).sqrt().clamp(1, w).long()
    top = (torch.rand(n, device=dev, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(n, device=dev, generator=generator) * (w - ew + 1)).long()
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # N,H
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # N,W
    apply = torch.rand(n, device=dev, generator=generator) < p
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


def batch_augment(
    x: Tensor,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_padding: int = 0,
    hflip: bool = False,
    random_erasing: float = 0.0,
) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> normalised float: resize to ``size`` if needed, then the
    enabled augmentations, normalised exactly as evaluation is
    (:func:`resnet_pl.data.transforms.normalize`). Float input is taken as already
    normalised and returned as is."""
    if x.is_floating_point():
        return x
    if x.shape[-2:] != (size, size):
        x = resize(x, [size, size], antialias=True)
    x = random_crop(x, crop_padding)
    if hflip:
        x = random_hflip(x)
    return random_erase(normalize(x, mean, std), random_erasing)
