"""resnet-pl: residual networks for PyTorch Lightning, with a verified pretrained-weights hub.

Every public name below is imported on first use, so ``import resnet_pl`` (and torch.hub's
hubconf) stays light, and importing a lower layer (``resnet_pl.models``) never drags in a higher
one (the weights hub, Lightning, ONNX or ``huggingface_hub``). The layers, bottom to top::

    errors  <-  models / data  <-  hub  <-  factory (create_model)  <-  lightning / deploy
           <-  bench (the benchmark engine)  <-  cli

(docs/architecture.md; ``tests/test_layers.py`` enforces it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from resnet_pl.version import __version__

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
        register_model,
    )
    from resnet_pl.models.builders import *  # noqa: F403  (one builder per registered name)

# Names other than the architectures, and the module each is imported from on first use.
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
            "register_model",
        ),
        "resnet_pl.models",
    ),
}
# The architecture builders (``resnet_pl.resnet20`` ...) are not listed here: they are the
# registry's names, ``resnet_pl.models.builders.__all__``, read when first asked for (that
# imports torch, which ``import resnet_pl`` alone does not).
_ARCHS = "resnet_pl.models.builders"


def _arch_names() -> list[str]:
    return list(importlib.import_module(_ARCHS).__all__)


def __getattr__(name: str) -> object:
    if name == "__all__":
        value: object = ["__version__", *sorted(_LAZY), *_arch_names()]
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("_") and name in _arch_names():
        value = getattr(importlib.import_module(_ARCHS), name)
    else:
        raise AttributeError(f"module 'resnet_pl' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_arch_names()})
