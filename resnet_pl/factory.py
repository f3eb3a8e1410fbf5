"""``create_model``: one call from a name to a model, with or without verified weights.

The factory sits above the architectures (:mod:`resnet_pl.models`: builders, registry) and the
weights hub (:mod:`resnet_pl.hub`: records, verified loading), and below everything that uses
models (Lightning, export, the command line)::

    models  <-  hub (weights records, loading)  <-  factory  <-  lightning / deploy  <-  cli

Names are timm-style: ``"resnet50"`` is an architecture, ``"resnet20.fashion_mnist"`` names
an architecture and one of its registered weights (:func:`resnet_pl.list_pretrained`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from resnet_pl.hub.loading import build_pretrained
from resnet_pl.hub.weights import get_weights
from resnet_pl.models.registry import (
    ModelInfo,
    count_flops,
    count_params,
    get_builder,
    split_name,
)


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
            (``"resnet20.fashion_mnist"``); see :func:`resnet_pl.list_models` and
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
        return build_pretrained(arch, tag, builder, num_classes, in_chans, kwargs)
    if tag is not None:
        # A tag without pretrained=True builds the tagged model's architecture (its classes,
        # channels, stem) with random weights, like timm.
        entry = get_weights(arch, tag)
        kwargs = {**entry.arch_kwargs, **kwargs}
        num_classes = entry.num_classes if num_classes is None else num_classes
        in_chans = entry.in_chans if in_chans is None else in_chans
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    # The builders set model.pretrained_cfg themselves (see resnet_pl.models.builders).
    return builder(**kwargs)


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


__all__ = ["create_model", "model_info"]
