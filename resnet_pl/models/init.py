"""Initialisations beyond the default He init: data-dependent patch whitening for the first
convolution, and identity (Dirac) initialisation of the convolutions that keep their shape.

Both come from the fast-training literature (airbench: Jordan 2024; Dirac/"identity" init:
Zagoruyko & Komodakis 2017, https://arxiv.org/abs/1706.00388). They change only the starting
point, never the architecture, so a state dict stays interchangeable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def patch_covariance(images: Tensor, kernel_size: tuple[int, int], padding: int) -> Tensor:
    """Covariance ``(D, D)`` of all ``kernel_size`` patches of float ``(N, C, H, W)`` images,
    ``D = C * kh * kw``, in the order a ``Conv2d`` weight is flattened."""
    patches = F.unfold(images.float(), kernel_size, padding=padding)  # N, D, L
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
    patches = patches - patches.mean(dim=0, keepdim=True)
    return patches.T @ patches / max(patches.shape[0] - 1, 1)


@torch.no_grad()
def whiten_conv_(conv: nn.Conv2d, images: Tensor, eps: float = 5e-4) -> nn.Conv2d:
    """Set ``conv``'s filters to the patch-whitening transform of ``images`` (in place).

    The filters are the top principal directions of the input patches, each scaled by
    ``1 / sqrt(eigenvalue + eps)``, so on this data every filter's output has unit variance
    and the filters are uncorrelated. ``out_channels // 2`` directions are used twice, with
    opposite signs, so a following ReLU keeps both halves of each component (as airbench
    does); an odd last channel takes one more direction. ``images``: normalised float inputs
    as the network sees them (a few thousand are plenty).
    """
    if conv.groups != 1:
        raise ValueError("patch whitening needs a dense (groups=1) convolution")
    kh, kw = conv.kernel_size
    pad = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    cov = patch_covariance(images.to(conv.weight.device), (kh, kw), int(pad))
    dim = cov.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # largest first
    out = conv.out_channels
    half = (out + 1) // 2
    if half > dim:
        raise ValueError(
            f"a {out}-filter {kh}x{kw} conv over {conv.in_channels} channel(s) has more "
            f"filter pairs ({half}) than patch dimensions ({dim}); whitening needs "
            f"out_channels <= {2 * dim}"
        )
    filters = eigvecs[:, :half].T / (eigvals[:half, None].clamp_min(0) + eps).sqrt()
    weight = torch.cat([filters, -filters])[:out]
    conv.weight.copy_(weight.reshape(out, conv.in_channels, kh, kw).to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@torch.no_grad()
def dirac_init_(model: nn.Module, noise: float = 0.0) -> int:
    """Identity-initialise every 3x3 stride-1 convolution whose input and output channel
    counts match (``nn.init.dirac_``), optionally plus Gaussian noise of std ``noise`` times
    the He std; other convolutions keep their weights. Returns how many were changed."""
    changed = 0
    for m in model.modules():
        if (
            isinstance(m, nn.Conv2d)
            and m.in_channels == m.out_channels
            and m.groups == 1
            and m.kernel_size == (3, 3)
            and m.stride == (1, 1)
        ):
            nn.init.dirac_(m.weight)
            if noise > 0:
                fan_in = m.in_channels * 9
                m.weight.add_(torch.randn_like(m.weight) * noise * (2.0 / fan_in) ** 0.5)
            changed += 1
    return changed
