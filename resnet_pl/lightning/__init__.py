"""Lightning integration: the classifier (and distillation) modules, the data module and the
training CLI."""

from resnet_pl.lightning.data import DataNotFoundError, ImageDataModule
from resnet_pl.lightning.distill import DistillationClassifier, TeacherMismatchError
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
    "DistillationClassifier",
    "ImageDataModule",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "ResNetClassifier",
    "TeacherMismatchError",
    "UntrustedCheckpointError",
]
