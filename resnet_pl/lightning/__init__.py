"""Lightning integration: the classifier module, the data module and the training CLI."""

from resnet_pl.lightning.data import DataNotFoundError, ImageDataModule
from resnet_pl.lightning.module import NonFiniteLossError, ResNetClassifier

__all__ = ["DataNotFoundError", "ImageDataModule", "NonFiniteLossError", "ResNetClassifier"]
