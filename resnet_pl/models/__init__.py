"""Residual network architectures, their named builders and the registry.

The bottom layer of resnet-pl: importing it imports torch and torchvision only (no weights hub,
Lightning, ONNX or ``huggingface_hub``). ``resnet_pl.create_model`` (the factory, one layer
up) adds weights tags and pretrained loading.

The architecture names exported here are the registry's (``builders.__all__``, read from it),
not a second hand-written list.
"""

from resnet_pl.models import builders as _builders
from resnet_pl.models.builders import *  # noqa: F403  (one builder per registered name)
from resnet_pl.models.registry import (
    ModelInfo,
    UnknownModelError,
    count_flops,
    count_params,
    get_builder,
    get_default_cfg,
    list_models,
    register_model,
)
from resnet_pl.models.resnet import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ResNet,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "UnknownModelError",
    "count_flops",
    "count_params",
    "get_builder",
    "get_default_cfg",
    "list_models",
    "register_model",
    *_builders.__all__,
]
