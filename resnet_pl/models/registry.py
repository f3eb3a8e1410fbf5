"""Model registry: names to builders, with a default config beside each architecture (timm-style).

``create_model("resnet20")`` builds an architecture; ``create_model("resnet20.fashion_mnist",
pretrained=True)`` also loads verified weights (see :mod:`resnet_pl.hub`).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ModelBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}
_DEFAULT_CFGS: dict[str, dict[str, Any]] = {}


class UnknownModelError(ValueError):
    """An architecture name that is not registered; the message lists close matches."""


def register_model(name: str, builder: ModelBuilder, default_cfg: dict[str, Any]) -> None:
    """Register ``builder`` (``**kwargs -> nn.Module``) under ``name`` with its default cfg
    (at least ``input_size``)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = builder
    _DEFAULT_CFGS[name] = dict(default_cfg)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered architecture names, sorted, optionally filtered by a shell pattern
    (``list_models("resnet*")``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet20.fashion_mnist"`` -> ``("resnet20", "fashion_mnist")``; ``"resnet20"`` ->
    ``("resnet20", None)``."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def get_builder(arch: str) -> ModelBuilder:
    """The builder for ``arch``, or :class:`UnknownModelError` naming close matches."""
    try:
        return _REGISTRY[arch]
    except KeyError:
        close = difflib.get_close_matches(arch, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {arch!r}.{hint} See resnet_pl.list_models() for all "
            f"{len(_REGISTRY)} names."
        ) from None


def get_default_cfg(arch: str) -> dict[str, Any]:
    """A copy of the architecture's default cfg (``input_size``, ``family``, ``paper``)."""
    get_builder(arch)
    return dict(_DEFAULT_CFGS[arch])


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: an architecture (``"resnet50"``) or ``"arch.tag"`` naming pretrained weights
            (``"resnet20.fashion_mnist"``); see :func:`list_models` and
            :func:`resnet_pl.list_pretrained`.
        pretrained: load the weights named by the tag (or the architecture's default tag),
            verified by sha256 before use.
        num_classes: classifier size. With pretrained weights of another size the head is
            re-initialised, with a warning.
        in_chans: input channels. With pretrained weights of another count the stem is
            adapted (summed or repeated over channels), with a warning.
        **kwargs: any other :class:`resnet_pl.models.ResNet` option (``drop_path_rate``,
            ``zero_init_residual``, ``features_only``, ``stem`` ...).

    Returns:
        The model, with ``model.pretrained_cfg`` describing its expected input.
    """
    arch, tag = split_name(name)
    builder = get_builder(arch)
    if pretrained:
        from resnet_pl.hub.pretrained import build_pretrained

        return build_pretrained(arch, tag, builder, num_classes, in_chans, kwargs)
    if tag is not None:
        # A tag without pretrained=True builds the tagged model's architecture (its classes,
        # channels, stem) with random weights, like timm.
        from resnet_pl.hub.weights import get_weights

        entry = get_weights(arch, tag)
        kwargs = {**entry.arch_kwargs, **kwargs}
        num_classes = entry.num_classes if num_classes is None else num_classes
        in_chans = entry.in_chans if in_chans is None else in_chans
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    model = builder(**kwargs)
    cfg = get_default_cfg(arch)
    cfg["architecture"] = arch
    cfg["input_size"] = (getattr(model, "in_chans", 3), *cfg["input_size"][1:])
    cfg["num_classes"] = getattr(model, "num_classes", None)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model


@dataclass(frozen=True)
class ModelInfo:
    """Size and cost of one model at one input size."""

    name: str
    params: int
    input_size: tuple[int, int, int]
    flops: int  # per image, forward pass, as counted by torch.utils.flop_counter (2 per MAC)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.flops / 2e9


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image of ``input_size`` (C, H, W), counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device when possible."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        params = next(model.parameters())
        x = torch.zeros(1, *input_size, device=params.device, dtype=params.dtype)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def model_info(
    name: str, input_size: tuple[int, int, int] | None = None, **kwargs: Any
) -> ModelInfo:
    """Parameters and FLOPs per image of a registered model (built on the meta device, so even
    ResNet-1202 costs no memory)."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    cfg: dict[str, Any] = model.pretrained_cfg  # type: ignore[assignment]
    c, h, w = input_size or cfg["input_size"]
    size = (int(c), int(h), int(w))
    return ModelInfo(name, count_params(model), size, count_flops(model, size))
