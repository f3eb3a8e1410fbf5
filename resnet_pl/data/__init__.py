"""The data layer: dataset specs, loaders, the one image decoder and the one evaluation
transform. Training (``resnet_pl.lightning``), the weights hub and deployment all take their
data and preprocessing from here, and this package imports none of them.

- :mod:`~resnet_pl.data.specs`: ``SPECS`` (per-dataset classes, channels, size, mean/std),
  ``IMAGENET_MEAN`` / ``IMAGENET_STD``, default normalisation and crop.
- :mod:`~resnet_pl.data.datasets`: IDX (MNIST, Fashion-MNIST) and torchvision (CIFAR, SVHN)
  loaders, downloads, synthetic data.
- :mod:`~resnet_pl.data.decode`: :func:`load_image`, the decoder (EXIF, alpha, bit depth).
- :mod:`~resnet_pl.data.transforms`: :func:`eval_transform` and its two halves.
- :mod:`~resnet_pl.data.folder`: class-folder datasets (``imagefolder``).
"""

from resnet_pl.data.datasets import (
    DEBIAN_FASHION_MNIST,
    download,
    idx_available,
    load_fashion_mnist,
    load_idx_dataset,
    load_torchvision_dataset,
    make_fake_dataset,
    read_idx,
)
from resnet_pl.data.decode import (
    ALPHA_BACKGROUND,
    IMAGE_SUFFIXES,
    convert_mode,
    decode_image,
    load_image,
)
from resnet_pl.data.errors import BadDataError, DataNotFoundError, IdxFormatError, ImageLoadError
from resnet_pl.data.specs import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPECS,
    DatasetSpec,
    default_crop_pct,
    default_norm,
)
from resnet_pl.data.transforms import (
    eval_geometry,
    eval_transform,
    normalize,
    preprocess_images,
    preprocess_uint8,
    resolve_data_cfg,
)

__all__ = [
    "ALPHA_BACKGROUND",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "SPECS",
    "BadDataError",
    "DataNotFoundError",
    "DatasetSpec",
    "IdxFormatError",
    "ImageLoadError",
    "convert_mode",
    "decode_image",
    "default_crop_pct",
    "default_norm",
    "download",
    "eval_geometry",
    "eval_transform",
    "idx_available",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_image",
    "load_torchvision_dataset",
    "make_fake_dataset",
    "normalize",
    "preprocess_images",
    "preprocess_uint8",
    "read_idx",
    "resolve_data_cfg",
]
