"""Dense-prediction rows: backbones at an output stride and segmentation models, by name.

A benchmark ``arch`` may name, besides a registered classifier:

- ``<arch>-os<N>``: the ``features_only`` backbone at output stride N (``resnet50-os8``), timed
  against torchvision's ResNet built with the same ``replace_stride_with_dilation`` and wrapped
  in ``IntermediateLayerGetter`` (no twin where torchvision cannot dilate: BasicBlock nets);
- ``deeplabv3_<arch>`` / ``fcn_<arch>`` (optionally ``-os<N>``): :func:`resnet_pl.backbones.
  deeplabv3` / :func:`~resnet_pl.backbones.fcn` with 21 classes (torchvision's default), timed
  against torchvision's own builder of that name (``deeplabv3_resnet50(weights=None,
  weights_backbone=None)``) where one exists at that stride (8).

Both sides get the same weights (the key layouts are identical), so they run the same
arithmetic. These rows time the forward pass (``infer``) only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from resnet_pl.factory import create_model
from resnet_pl.models.registry import count_flops, get_default_cfg

_SPEC = re.compile(r"^(?:(?P<head>deeplabv3|fcn)_)?(?P<arch>[a-z0-9_]+?)(?:-os(?P<os>\d+))?$")
NUM_CLASSES = 21  # torchvision's segmentation default (Pascal VOC)


@dataclass(frozen=True)
class DenseSpec:
    head: str | None  # None: a features_only backbone
    arch: str
    output_stride: int | None  # None: the head's default (torchvision's: 8 on ImageNet nets)


def parse(name: str) -> DenseSpec | None:
    """The dense spec ``name`` spells, or ``None`` for a plain classifier name."""
    match = _SPEC.match(name)
    if match is None or (match["head"] is None and match["os"] is None):
        return None
    return DenseSpec(match["head"], match["arch"], int(match["os"]) if match["os"] else None)


def base_arch(name: str) -> str:
    """The registered architecture under ``name`` (``name`` itself for a classifier)."""
    spec = parse(name)
    return name if spec is None else spec.arch


def build(name: str) -> nn.Module:
    """Our model for a dense spec (raises ``ValueError`` on an impossible output stride)."""
    spec = parse(name)
    if spec is None:
        raise ValueError(f"{name!r} is not a dense-prediction spec")
    if spec.head is None:
        return create_model(spec.arch, features_only=True, output_stride=spec.output_stride)
    from resnet_pl import backbones

    builder = backbones.deeplabv3 if spec.head == "deeplabv3" else backbones.fcn
    return builder(spec.arch, num_classes=NUM_CLASSES, output_stride=spec.output_stride)


def _dilation_flags(ours: nn.Module) -> list[bool]:
    dilations = [f["dilation"] for f in ours.feature_info]  # type: ignore[union-attr]
    return [b > a for a, b in itertools.pairwise(dilations)]


def build_twin(name: str, ours: nn.Module) -> nn.Module | None:
    """torchvision's model for a dense spec, or ``None`` where torchvision has none."""
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter

    spec = parse(name)
    if spec is None:
        return None
    if spec.head is None:
        try:
            model = torchvision.models.get_model(
                spec.arch, weights=None, replace_stride_with_dilation=_dilation_flags(ours)
            )
        except (NotImplementedError, ValueError, TypeError):
            return None  # e.g. "Dilation > 1 not supported in BasicBlock"
        n = len(ours.feature_info)  # type: ignore[arg-type]
        return IntermediateLayerGetter(model, {f"layer{i}": str(i) for i in range(1, n + 1)})
    tv_name = f"{spec.head}_{spec.arch}"
    stride = getattr(getattr(ours, "backbone", None), "output_stride", None)
    if tv_name not in torchvision.models.list_models(torchvision.models.segmentation):
        return None
    if stride != 8:  # torchvision's segmentation builders are all output stride 8
        return None
    return torchvision.models.get_model(
        tv_name, weights=None, weights_backbone=None, num_classes=NUM_CLASSES
    )


@cache
def _meta_model(name: str) -> nn.Module:
    # Planning asks about each name several times; one shape-only build serves them all.
    with torch.device("meta"):
        return build(name)


@cache
def has_twin(name: str, twins: Collection[str]) -> bool:
    """Whether torchvision builds a same-structure model for the dense spec ``name``."""
    spec = parse(name)
    if spec is None or spec.arch not in twins:
        return False
    with torch.device("meta"):
        return build_twin(name, _meta_model(name)) is not None


def check(name: str) -> None:
    """Raise ``ValueError`` (one clear message) if ``name`` cannot be built."""
    get_default_cfg(base_arch(name))
    _meta_model(name)


@cache
def flops(name: str, input_size: int, twin: bool = False) -> int:
    """Forward FLOPs per image of ours (or the twin) at ``input_size`` px, on the meta device."""
    model = _meta_model(name)
    if twin:
        with torch.device("meta"):
            model = build_twin(name, model) or model
    chans = int(get_default_cfg(base_arch(name))["input_size"][0])
    return count_flops(model, (chans, input_size, input_size))
