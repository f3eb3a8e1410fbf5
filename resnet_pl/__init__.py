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

# Lightning and ONNX pieces load on first use, so `import resnet_pl` (and torch.hub's
# hubconf) stays light: no Lightning, ONNX or huggingface_hub import until asked for.
_LAZY = {
    "ResNetClassifier": "resnet_pl.lightning",
    "ImageDataModule": "resnet_pl.lightning",
    "export_onnx": "resnet_pl.deploy",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resnet_pl' has no attribute {name!r}")


__all__ = [
    "ImageDataModule",
    "ResNet",
    "ResNetClassifier",
    "UnknownModelError",
    "__version__",
    "create_model",
    "export_onnx",
    "list_models",
    "list_pretrained",
    "model_info",
    "transforms",
]
