"""Small validators for :class:`~resnet_pl.lightning.module.ResNetClassifier`'s option values,
one per group of options, each raising :class:`~resnet_pl.lightning.errors.ConfigError` with
one line naming the option, the value and the accepted range.

They are plain functions of plain values (no module state), so whichever object holds the
options (the constructor today, typed option groups later) calls the same checks. Values that
torch or Lightning would refuse only later with a traceback (``momentum=-1``), or accept
silently with a wrong result (``min_lr_ratio=-1``: the cosine factor turns negative, i.e.
gradient *ascent*; ``warmup_epochs=-3``), fail here, before any data is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet_pl.lightning.errors import ConfigError


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def check_in_range(
    name: str, value: Any, low: float, high: float | None = None, *, high_open: bool = False
) -> float:
    """``value`` as a finite number in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
    above = high is not None and (value >= high if high_open else value > high)
    if not _number(value) or value < low or above:
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a finite number in [{low}, {hi}, got {value!r}")
    return float(value)


def check_optimizer_values(momentum: Any, betas: Any) -> None:
    """``momentum`` in [0, 1) (SGD); ``betas`` two numbers in [0, 1) (Adam/AdamW)."""
    check_in_range("momentum", momentum, 0.0, 1.0, high_open=True)
    if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise ConfigError(f"betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {betas!r}")
    for i, beta in enumerate(betas):
        check_in_range(f"betas[{i}]", beta, 0.0, 1.0, high_open=True)


def check_schedule_values(
    warmup_epochs: Any, min_lr_ratio: Any, step_milestones: Any, step_gamma: Any
) -> None:
    """``warmup_epochs`` >= 0; ``min_lr_ratio`` in [0, 1] (the final learning rate as a
    fraction of ``lr``); ``step_milestones`` non-negative integers; ``step_gamma`` > 0."""
    check_in_range("warmup_epochs", warmup_epochs, 0.0)
    check_in_range("min_lr_ratio", min_lr_ratio, 0.0, 1.0)
    if (
        isinstance(step_milestones, str)
        or not isinstance(step_milestones, Sequence)
        or any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in step_milestones)
    ):
        raise ConfigError(
            f"step_milestones must be a list of epoch numbers >= 0, got {step_milestones!r}"
        )
    if not _number(step_gamma) or step_gamma <= 0:
        raise ConfigError(f"step_gamma must be a finite number > 0, got {step_gamma!r}")


def check_checkpoint_sizes(path: Path, name: str) -> None:
    """The hyperparameters LightningCLI is about to build the model from, checked first: sizes
    within :mod:`resnet_pl.limits`, preprocessing finite, and (for registry architectures)
    the network they describe, built on the meta device, of the shapes the checkpoint's
    weights have; a checkpoint claiming ``num_classes: 10**9`` or huge widths is refused as
    one line instead of allocating hundreds of GB. Unreadable files are left to
    the loader's own one-line report. ``name`` is how the message names the file (e.g.
    ``--ckpt_path x.ckpt``)."""
    import torch

    from resnet_pl.hub.pretrained import structural_kwargs
    from resnet_pl.hub.untrusted import check_checkpoint_hparams, check_preprocessing
    from resnet_pl.limits import UntrustedValueError, check_build_args
    from resnet_pl.models.registry import split_name

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return
    from resnet_pl.hub.checkpoint import flat_hparams

    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict):
        return
    hp = flat_hparams(hp)  # grouped (optim, data_info ...) or the flat form of before
    where = f"{name}: hyper_parameters"
    kwargs = hp.get("model_kwargs")
    try:
        check_build_args(
            hp.get("num_classes", 1), hp.get("in_chans", 1), kwargs if kwargs else {}, where
        )
    except UntrustedValueError as err:
        raise ConfigError(
            f"{err}; the checkpoint is damaged or was not written by resnet-pl"
        ) from None
    check_preprocessing(hp, where, ConfigError)
    arch = hp.get("arch")
    weights = ckpt.get("state_dict")
    sized = hp.get("num_classes") is not None and hp.get("in_chans") is not None
    if not isinstance(arch, str) or arch == "custom" or not isinstance(weights, dict) or not sized:
        return
    shapes = {
        k[len("model.") :]: tuple(v.shape)
        for k, v in weights.items()
        if isinstance(k, str) and k.startswith("model.") and isinstance(v, torch.Tensor)
    }
    options = structural_kwargs(kwargs if isinstance(kwargs, dict) else {})
    check_checkpoint_hparams(hp, split_name(arch)[0], options, shapes, name,
                             ConfigError)  # fmt: skip


__all__ = [
    "check_checkpoint_sizes",
    "check_in_range",
    "check_optimizer_values",
    "check_schedule_values",
]
