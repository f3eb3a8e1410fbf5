"""Test-time augmentation (TTA): average a classifier's logits over a few cheap views.

The views follow airbench (Jordan 2024, https://github.com/KellerJordan/cifar10-airbench):
the image and its mirror weigh most, 1-pixel translations refine. Padding replicates the
border, so a dark background stays dark (zero padding of a *normalised* image would paint the
border grey). Every view is a plain tensor op (flip, pad, slice), so a wrapped model exports
to ONNX with the views inside the graph.

Modes (the name is recorded in checkpoints and weight records; ``num_views`` tells its cost):

========================  =======  ==================================================
mode                      views    what
========================  =======  ==================================================
``"none"``                1        the image
``"flip"``                2        image, mirror (datasets whose labels survive a flip)
``"shift"``               3        image + two diagonal 1-px translations (digits)
``"flip_shift"``          6        the flip views, each also translated both ways
========================  =======  ==================================================
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

TTAMode = Literal["none", "flip", "shift", "flip_shift"]
TTA_MODES: tuple[str, ...] = ("none", "flip", "shift", "flip_shift")
_VIEWS = {"none": 1, "flip": 2, "shift": 3, "flip_shift": 6}


def num_views(mode: str) -> int:
    """How many forward passes ``mode`` costs per image."""
    check_mode(mode)
    return _VIEWS[mode]


def check_mode(mode: str, flip_allowed: bool = True) -> None:
    """Refuse an unknown mode, or a flipping mode on data whose labels a flip changes."""
    if mode not in _VIEWS:
        raise ValueError(f"unknown tta mode {mode!r}; choose one of {', '.join(TTA_MODES)}")
    if "flip" in mode and not flip_allowed:
        raise ValueError(
            f"tta={mode!r} mirrors images, but this dataset's labels do not survive a flip "
            "(digits); use tta='shift' or 'none'"
        )


def translate(x: Tensor, dy: int, dx: int) -> Tensor:
    """Shift ``(N, C, H, W)`` images by ``(dy, dx)`` pixels, replicating the border."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    top, left = p - dy, p - dx
    return padded[..., top : top + h, left : left + w]


def tta_logits(model: nn.Module, x: Tensor, mode: str = "none") -> Tensor:
    """``model``'s logits for ``x`` averaged over the views of ``mode``.

    Weights: the un-shifted views carry half of the total when there are shifted ones, as in
    airbench (the centred image is the most informative view).
    """
    if mode == "none":
        return model(x)
    flips = [x, x.flip(-1)] if "flip" in mode else [x]
    centre = sum(model(v) for v in flips) / len(flips)
    if "shift" not in mode:
        return centre  # type: ignore[return-value]
    shifted = [translate(v, d, d) for v in flips for d in (-1, 1)]
    side = sum(model(v) for v in shifted) / len(shifted)
    return 0.5 * centre + 0.5 * side  # type: ignore[return-value]


class TestTimeAugmentation(nn.Module):
    """Wrap a classifier so that ``forward`` returns :func:`tta_logits` (for export/serving)."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        check_mode(mode)
        self.model = model
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return tta_logits(self.model, x, self.mode)


def with_tta(model: nn.Module, mode: str | None) -> nn.Module:
    """``model`` wrapped to average over ``mode``'s views, or ``model`` itself for ``none``.

    Deployment paths (``classify``, ONNX export, ``hub verify``) call this with the mode a
    checkpoint or weight record carries, so they see what ``resnet-pl test`` measured.
    """
    mode = mode or "none"
    check_mode(mode)
    return model if mode == "none" else TestTimeAugmentation(model, mode)
