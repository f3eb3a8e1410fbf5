"""Residual network architectures and their registry."""

from resnet_pl.models.registry import (
    ModelInfo,
    UnknownModelError,
    count_flops,
    count_params,
    create_model,
    get_default_cfg,
    list_models,
    model_info,
    register_model,
)
from resnet_pl.models.resnet import (  # registers every architecture on import
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
    "create_model",
    "get_default_cfg",
    "list_models",
    "model_info",
    "register_model",
]
