"""``ImageDataModule``: the datasets resnet-pl trains on, by name, through one front door.

Each data path is its own module on a small shared base
(:mod:`resnet_pl.lightning.datamodules`):

- :class:`~resnet_pl.lightning.datamodules.tensor.TensorDataModule`: small datasets (MNIST,
  Fashion-MNIST, CIFAR, SVHN, fake) held in memory as uint8 tensors and augmented a whole batch
  at a time on the device;
- :class:`~resnet_pl.lightning.datamodules.folder.FolderDataModule`: a user's own class folders
  (``imagefolder``), decoded with per-image transforms in worker processes.

``ImageDataModule(dataset=...)`` looks the name up in :data:`DATA_MODULES` and returns that
module, so ``--data.dataset imagefolder --data.data_dir ...`` works on the command line. A new
data path is one entry there (``streaming``:
:class:`~resnet_pl.lightning.streaming.StreamingDataModule`, LitData shards).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import warnings
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Literal

import lightning as L

from resnet_pl.data.errors import DataNotFoundError
from resnet_pl.data.specs import SPECS
from resnet_pl.lightning.datamodules.base import ImageDataBase
from resnet_pl.lightning.datamodules.folder import FolderDataModule
from resnet_pl.lightning.datamodules.tensor import TensorDataModule, TensorImageDataset
from resnet_pl.lightning.datamodules.tensor import collate_batch as _collate_batch  # noqa: F401
from resnet_pl.lightning.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DATA_MODULES",
    "DataNotFoundError",
    "FolderDataModule",
    "ImageDataBase",
    "ImageDataModule",
    "TensorDataModule",
    "TensorImageDataset",
    "data_module_class",
]

_TENSOR = "resnet_pl.lightning.datamodules.tensor:TensorDataModule"
_FOLDER = "resnet_pl.lightning.datamodules.folder:FolderDataModule"

#: Dataset name -> the data module that serves it ("package.module:Class", imported when used).
#: A new data path is one line here: a LightningDataModule taking ``dataset`` (best on
#: ImageDataBase, which gives it the shared options and the model's metadata properties); the
#: front door passes it the options its ``__init__`` names.
DATA_MODULES: dict[str, str] = {
    **{name: _TENSOR for name in SPECS},
    "imagefolder": _FOLDER,
    # LitData shards written by `resnet-pl data optimize` (docs/data-at-scale.md).
    "streaming": "resnet_pl.lightning.streaming:StreamingDataModule",
}


def data_module_class(dataset: str) -> type[L.LightningDataModule]:
    """The data module class registered for ``dataset`` (:data:`DATA_MODULES`)."""
    target = DATA_MODULES.get(dataset)
    if target is None:
        close = difflib.get_close_matches(dataset, DATA_MODULES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown dataset {dataset!r}.{hint} Choose one of {', '.join(DATA_MODULES)}."
        )
    module, _, name = target.partition(":")
    cls = getattr(import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, L.LightningDataModule), target
    return cls


class _FrontDoorType(type):
    """``isinstance(dm, ImageDataModule)`` holds for every registered data module."""

    def __instancecheck__(cls, obj: Any) -> bool:
        if cls is ImageDataModule:
            return isinstance(obj, ImageDataBase)
        return super().__instancecheck__(obj)


class ImageDataModule(ImageDataBase, metaclass=_FrontDoorType):
    """Image classification data for resnet-pl.

    Args:
        dataset: one of ``mnist, fashion_mnist, cifar10, cifar100, svhn, imagefolder, fake``,
            or ``streaming`` (LitData shards at ``data_dir``, a folder or a bucket URL:
            :class:`~resnet_pl.lightning.streaming.StreamingDataModule`).
        data_dir: where the data lies. MNIST/Fashion-MNIST: a folder of raw IDX files (``.gz`` or
            not) or torchvision's layout; Fashion-MNIST is also found where the Debian package
            ``dataset-fashion-mnist`` installs it. ``imagefolder``: a folder with ``train/``
            (and optionally ``val/``, ``test/``) holding one sub-folder per class.
        batch_size: per device (with DDP the global batch is ``batch_size * world_size``).
        eval_batch_size: for validation/test/predict; defaults to ``2 * batch_size``.
        num_workers: loader processes; ``None`` chooses (0 for in-memory data, which needs no
            decoding, else ``min(8, cpu_count)``).
        val_fraction: share of the training set held out for validation when the dataset has
            no validation split, drawn with ``seed`` (the test set is never used to choose).
        seed: seed of the validation split and of ``fake`` data.
        image_size: side the model sees; defaults to the dataset's own (28 for MNIST-likes,
            32 for CIFAR/SVHN, 224 for ``imagefolder``).
        crop_pct: evaluation images are resized (shorter side) to ``floor(image_size /
            crop_pct)`` and centre-cropped to ``image_size``, as ``classify`` and exported
            models do; default 1.0 up to 64 px, 0.875 above. The model records it in its
            checkpoint.
        in_chans: ``imagefolder`` only: 3 (RGB, default) or 1 (grayscale); other datasets
            have their own.
        augment: ``"standard"`` (random crop with padding + flip where labels allow; for
            ``imagefolder`` the ImageNet policy), ``"none"``, or for ``imagefolder`` a policy
            of :func:`resnet_pl.data.recipe.train_transform`: ``"small"`` (shift + mild scale
            jitter, for images up to 64 px) or ``"photo"`` (the ImageNet policy).
        crop_padding: padding of the random crop for in-memory data (pixels).
        hflip: override the dataset's flip default (digits are not flipped).
        random_erasing: probability of erasing one random rectangle per training image.
        norm_mean, norm_std: override the per-dataset normalisation statistics.
        download: ``"auto"`` (default): use a local copy (``data_dir``, the Debian package's
            folder, the cache folder) or, when there is none, download it once into
            ``data_dir`` or the cache (md5-checked; see :mod:`resnet_pl.data.download`);
            ``False``: never touch the network; ``True``: always fetch into that folder.
        train_subset, val_subset, test_subset: use only the first N items (quick runs, tests).
        bad_files: ``imagefolder`` policy for unreadable images: ``"skip"`` (logged with a count
            and the file list) or ``"error"`` (stop, naming the file).
        fake_size: number of training images of the ``fake`` dataset.
        train_size_schedule: progressive resizing: ``[[epoch, size], ...]`` trains from
            ``epoch`` on at ``size`` pixels (the batch is resized on its device, antialiased,
            before the crop), e.g. ``[[0, 20], [8, 28]]``. Epochs before the first entry and
            every evaluation use ``image_size``; end at ``image_size`` so the last epochs
            calibrate BatchNorm to the size the model is evaluated and deployed at.
        cache_dir, max_cache_size, timeout: ``streaming`` only: where LitData keeps chunks
            read from a bucket, its size budget (e.g. ``"200GB"``), and the seconds to wait for
            a bucket's manifest (see ``docs/data-at-scale.md``).
    """

    # jsonargparse (and so LightningCLI) reads the options from __new__'s signature.
    def __new__(
        cls,
        dataset: str = "fashion_mnist",
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int | None = None,
        augment: Literal["standard", "none", "small", "photo"] = "standard",
        crop_padding: int = 4,
        hflip: bool | None = None,
        random_erasing: float = 0.0,
        norm_mean: Sequence[float] | None = None,
        norm_std: Sequence[float] | None = None,
        download: bool | Literal["auto"] = "auto",
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        bad_files: Literal["skip", "error"] = "skip",
        fake_size: int = 1024,
        crop_pct: float | None = None,
        in_chans: int | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
        timeout: float = 60.0,
    ) -> Any:
        options = {k: v for k, v in locals().items() if k not in ("cls", "__class__")}
        if cls is not ImageDataModule:  # a subclass of the front door: refused in __init__
            return ImageDataBase.__new__(cls)
        target = data_module_class(options["dataset"])
        accepted = inspect.signature(target.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            return target(**options)
        defaults = inspect.signature(ImageDataModule.__new__).parameters
        for name in [k for k in options if k not in accepted]:
            value = options.pop(name)
            if value != defaults[name].default:
                warnings.warn(
                    f"{name}={value!r} has no effect with dataset {options['dataset']!r} "
                    f"({target.__name__})",
                    UserWarning,
                    stacklevel=2,
                )
        return target(**options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Only a subclass of the front door gets here: ImageDataModule(...) itself returns the
        # registered data module, built by __new__.
        raise TypeError(
            f"{type(self).__name__}: ImageDataModule is the front door that picks a data "
            f"module by dataset name; subclass the data path instead (TensorDataModule, "
            f"FolderDataModule or ImageDataBase from resnet_pl.lightning.datamodules)"
        )
