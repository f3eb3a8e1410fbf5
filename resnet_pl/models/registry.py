"""Model registry: architecture names to builders, each with its default cfg (timm-style).

The bottom of the package's dependency order (``models <- hub <- factory <- lightning / deploy
<- cli``): this module knows names, builders and default cfgs, nothing of weights.
:func:`register_model` is the decorator the named builders in
:mod:`resnet_pl.models.builders` are registered with; :func:`resnet_pl.create_model` (in
:mod:`resnet_pl.factory`) adds weights tags and pretrained loading on top.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from resnet_pl.errors import ResNetPLError

ModelBuilder = Callable[..., nn.Module]
BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, ModelBuilder] = {}
_DEFAULT_CFGS: dict[str, dict[str, Any]] = {}


class UnknownModelError(ResNetPLError, ValueError):
    """An architecture name that is not registered; the message lists close matches."""


def register_model(
    default_cfg: Mapping[str, Any], *, name: str | None = None
) -> Callable[[BuilderT], BuilderT]:
    """Decorator registering a builder (``(*, pretrained=False, **kwargs) -> nn.Module``) under
    ``name`` (default: the function's name) with its default cfg (at least ``input_size``)::

        @register_model({"input_size": (3, 32, 32), "family": "small", "paper": "..."})
        def my_resnet(*, pretrained: bool = False, **kwargs: Any) -> ResNet: ...

    Returns the builder unchanged, so it stays a plain, documented function.
    """

    def decorator(builder: BuilderT) -> BuilderT:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        if "input_size" not in default_cfg:
            raise ValueError(f"default_cfg of {key!r} needs an input_size")
        _REGISTRY[key] = builder
        _DEFAULT_CFGS[key] = dict(default_cfg)
        return builder

    return decorator


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


def default_model_cfg(arch: str, model: nn.Module) -> dict[str, Any]:
    """``model.pretrained_cfg`` of a freshly built (random-weights) ``arch``: its default cfg
    with the architecture name and the model's own channel and class counts."""
    cfg = get_default_cfg(arch)
    cfg["architecture"] = arch
    cfg["input_size"] = (getattr(model, "in_chans", 3), *cfg["input_size"][1:])
    cfg["num_classes"] = getattr(model, "num_classes", None)
    return cfg


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
