"""resnet-pl: residual networks for PyTorch Lightning, with a verified pretrained-weights hub.

Every public name below is imported on first use, so ``import resnet_pl`` (and torch.hub's
hubconf) stays light, and importing a lower layer (``resnet_pl.models``) never drags in a higher
one (the weights hub, Lightning, ONNX or ``huggingface_hub``). The layers, bottom to top::

    errors  <-  models  <-  hub  <-  factory (create_model)  <-  lightning / deploy  <-  cli
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from resnet_pl.deploy import export_onnx
    from resnet_pl.errors import ResNetPLError
    from resnet_pl.factory import create_model, model_info
    from resnet_pl.hub import list_pretrained, transforms
    from resnet_pl.lightning import DistillationClassifier, ImageDataModule, ResNetClassifier
    from resnet_pl.models import (
        BasicBlock,
        Bottleneck,
        PreActBasicBlock,
        PreActBottleneck,
        ResNet,
        UnknownModelError,
        get_default_cfg,
        list_models,
        preact_resnet18,
        preact_resnet20,
        preact_resnet34,
        preact_resnet50,
        preact_resnet110,
        preact_resnet164,
        preact_resnet1001,
        register_model,
        resnet8,
        resnet8x4,
        resnet14,
        resnet18,
        resnet20,
        resnet32,
        resnet32x4,
        resnet34,
        resnet44,
        resnet50,
        resnet56,
        resnet101,
        resnet110,
        resnet152,
        resnet1202,
        resnext50_32x4d,
        resnext101_32x8d,
        resnext101_64x4d,
        wide_resnet50_2,
        wide_resnet101_2,
        wrn_16_2,
        wrn_16_4,
        wrn_16_8,
        wrn_28_10,
        wrn_40_4,
    )

_LAZY = {
    "ResNetPLError": "resnet_pl.errors",
    "create_model": "resnet_pl.factory",
    "model_info": "resnet_pl.factory",
    "list_pretrained": "resnet_pl.hub",
    "transforms": "resnet_pl.hub",
    "ResNetClassifier": "resnet_pl.lightning",
    "DistillationClassifier": "resnet_pl.lightning",
    "ImageDataModule": "resnet_pl.lightning",
    "export_onnx": "resnet_pl.deploy",
    **dict.fromkeys(
        (
            "BasicBlock",
            "Bottleneck",
            "PreActBasicBlock",
            "PreActBottleneck",
            "ResNet",
            "UnknownModelError",
            "get_default_cfg",
            "list_models",
            "preact_resnet1001",
            "preact_resnet110",
            "preact_resnet164",
            "preact_resnet18",
            "preact_resnet20",
            "preact_resnet34",
            "preact_resnet50",
            "register_model",
            "resnet101",
            "resnet110",
            "resnet1202",
            "resnet14",
            "resnet152",
            "resnet18",
            "resnet20",
            "resnet32",
            "resnet32x4",
            "resnet34",
            "resnet44",
            "resnet50",
            "resnet56",
            "resnet8",
            "resnet8x4",
            "resnext101_32x8d",
            "resnext101_64x4d",
            "resnext50_32x4d",
            "wide_resnet101_2",
            "wide_resnet50_2",
            "wrn_16_2",
            "wrn_16_4",
            "wrn_16_8",
            "wrn_28_10",
            "wrn_40_4",
        ),
        "resnet_pl.models",
    ),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'resnet_pl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "__version__",
    "BasicBlock",
    "Bottleneck",
    "DistillationClassifier",
    "ImageDataModule",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "ResNetClassifier",
    "ResNetPLError",
    "UnknownModelError",
    "create_model",
    "export_onnx",
    "get_default_cfg",
    "list_models",
    "list_pretrained",
    "model_info",
    "preact_resnet1001",
    "preact_resnet110",
    "preact_resnet164",
    "preact_resnet18",
    "preact_resnet20",
    "preact_resnet34",
    "preact_resnet50",
    "register_model",
    "resnet101",
    "resnet110",
    "resnet1202",
    "resnet14",
    "resnet152",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet8",
    "resnet8x4",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "transforms",
    "wide_resnet101_2",
    "wide_resnet50_2",
    "wrn_16_2",
    "wrn_16_4",
    "wrn_16_8",
    "wrn_28_10",
    "wrn_40_4",
]
