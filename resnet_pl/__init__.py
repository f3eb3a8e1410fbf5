"""resnet-pl: residual networks for PyTorch Lightning, with a verified pretrained-weights hub."""

from resnet_pl.hub import list_pretrained, transforms
from resnet_pl.models import (
    ResNet,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
)

__version__ = "0.1.0"

__all__ = [
    "ResNet",
    "UnknownModelError",
    "__version__",
    "create_model",
    "list_models",
    "list_pretrained",
    "model_info",
    "transforms",
]
