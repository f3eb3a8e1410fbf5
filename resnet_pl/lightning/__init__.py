"""Lightning integration: the classifier module, the data module and the training CLI."""

from resnet_pl.lightning.data import DataNotFoundError, ImageDataModule
from resnet_pl.lightning.errors import (
    BadCheckpointError,
    ConfigError,
    NonFiniteLossError,
    NonFiniteWeightsError,
    UntrustedCheckpointError,
)
from resnet_pl.lightning.module import ResNetClassifier

__all__ = [
    "BadCheckpointError",
    "ConfigError",
    "DataNotFoundError",
    "ImageDataModule",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "ResNetClassifier",
    "UntrustedCheckpointError",
]
