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
from resnet_pl.lightning.hparams import (
    DataInfo,
    DistillConfig,
    EvalConfig,
    FinetuneConfig,
    OptimConfig,
    RecipeConfig,
)
from resnet_pl.lightning.module import ResNetClassifier

__all__ = [
    "BadCheckpointError",
    "ConfigError",
    "DataInfo",
    "DataNotFoundError",
    "DistillConfig",
    "DistillationClassifier",
    "EvalConfig",
    "FinetuneConfig",
    "ImageDataModule",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "OptimConfig",
    "RecipeConfig",
    "ResNetClassifier",
    "TeacherMismatchError",
    "UntrustedCheckpointError",
]
