"""One data module per data path, on a small shared base (:mod:`.base`): in-memory tensors
(:mod:`.tensor`) and image folders (:mod:`.folder`). ``ImageDataModule`` in
:mod:`resnet_pl.lightning.data` picks one by dataset name (``DATA_MODULES``)."""

from resnet_pl.lightning.datamodules.base import ImageDataBase
from resnet_pl.lightning.datamodules.folder import FolderDataModule
from resnet_pl.lightning.datamodules.tensor import TensorDataModule, TensorImageDataset

__all__ = ["FolderDataModule", "ImageDataBase", "TensorDataModule", "TensorImageDataset"]
